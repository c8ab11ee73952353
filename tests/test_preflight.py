"""The preflight (issue 14 §2): `config validate` rejects what `run` / `eval compare` / `eval mi` would reject,
before any model loads, one ``FILE:LINE: field: problem`` line per problem, exit 2 — and never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from run_helpers import tiny_config

from sami_toolkit.cli import cli
from sami_toolkit.core.errors import ConfigError
from sami_toolkit.plugins.registry import load_plugins
from sami_toolkit.run.config import PRESETS, load_run_config
from sami_toolkit.run.preflight import check_run_config, preflight


def invoke(args: list[str], registry=None):
    result = CliRunner().invoke(cli, args, obj=registry)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    """A local model directory the preflight accepts (it never loads the weights)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return model


def run_file(tmp_path: Path, model: Path, **changes) -> Path:
    """tiny_config's run on ``model`` (5 queries a half, 4 held out), with top-level ``changes``."""
    return tiny_config(tmp_path, model, **changes)


def edit(path: Path, **changes) -> Path:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def validate(path: Path, *args: str, registry=None):
    return invoke(["config", "validate", str(path), *args], registry)


def line_with(path: Path, text: str) -> int:
    """The 1-based line of ``path`` where ``text`` is written."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# ------------------------------------------------------------------------------------------- run configs
def test_a_good_run_config_passes(tmp_path, fake_model):
    result = validate(run_file(tmp_path, fake_model))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip().endswith("OK (run config)")


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_passes_offline(name):
    """Hub models and hub datasets cannot be checked offline: a note, never an error."""
    notes = preflight(load_run_config(preset=name), load_plugins())
    if name != "demo":
        assert any("hub id" in note for note in notes)


def test_a_missing_deepspeed_plugin_is_a_note_not_an_error(monkeypatch):
    """The presets ask for deepspeed, a separate distribution; without it the run falls back to torch."""
    monkeypatch.setenv("SAMI_KIT_LOAD_PLUGINS", "")  # no entry-point plugins: deepspeed is "not installed"
    notes = preflight(load_run_config(preset="demo"), load_plugins())
    assert any("trainer 'deepspeed' is not installed" in note and "'torch'" in note for note in notes)


@pytest.mark.parametrize("key, value, field, expected", [
    ("trainer", {"name": "torhc"}, "trainer.name", "unknown trainer 'torhc'. Did you mean 'torch'?"),
    ("sampler", {"name": "hff"}, "sampler.name", "unknown sampler 'hff'. Did you mean 'hf'?"),
    ("judge", {"name": "litelm"}, "judge.name", "unknown judge 'litelm'. Did you mean 'litellm'?"),
    ("evaluators", [{"name": "mi-heldot"}], "evaluators.0.name", "unknown evaluator 'mi-heldot'. Did you mean 'mi-heldout'"),
    ("principles", "tldr-mistrl", "principles", "unknown principle set 'tldr-mistrl'. Did you mean 'tldr-mistral'"),
])
def test_unknown_names_say_did_you_mean(tmp_path, fake_model, key, value, field, expected):
    path = edit(run_file(tmp_path, fake_model), **{key: value})
    result = validate(path)
    assert result.exit_code == 2
    written = value if isinstance(value, str) else (value[0] if isinstance(value, list) else value)["name"]
    assert f"{path}:{line_with(path, written)}: {field}: " in result.stderr and expected in result.stderr


def test_unknown_component_option_names_the_field_and_the_show_command(tmp_path, fake_model):
    path = edit(run_file(tmp_path, fake_model),
                sampler={"name": "hf", "options": {"max_new_token": 20}},
                train={"loss": "sami", "loss_options": {"temprature": 1}})
    result = validate(path)
    assert result.exit_code == 2
    assert (f"{path}:{line_with(path, 'max_new_token:')}: sampler.options.max_new_token: unknown key; did you mean "
            "'max_new_tokens'? (`sami-kit samplers show hf` lists every option)") in result.stderr
    assert "train.loss_options.temprature: unknown key" in result.stderr
    assert "`sami-kit losses show sami`" in result.stderr
    assert "config schema" not in result.stderr  # a plugin's options are not in the config schema


def test_option_errors_outside_the_preflight_point_to_show_too():
    with pytest.raises(ConfigError) as err:
        load_plugins().create("samplers", "hf", {"temperature": "hot", "top": 1}, where="sampler.options")
    text = str(err.value)
    assert "sampler.options.temperature: Input should be a valid number" in text
    assert "sampler.options.top: unknown key" in text and "`sami-kit samplers show hf`" in text


def test_files_and_counts(tmp_path, fake_model):
    path = run_file(tmp_path, fake_model)
    missing = validate(path, "-o", "model=./no/such/model")
    assert missing.exit_code == 2 and "model: model path ./no/such/model does not exist" in missing.stderr
    hub = validate(path, "-o", "model=someorg/some-model")  # a hub id: not checked offline, only noted
    assert hub.exit_code == 0 and "hub id" in hub.stderr
    gguf = validate(path, "-o", f"model={tmp_path / 'm.gguf'}")
    assert gguf.exit_code == 2 and "m.gguf does not exist" in gguf.stderr
    c_big = validate(path, "-o", "constitutions.n=5")
    assert c_big.exit_code == 2
    assert "constitutions.n: strategy positive_vs_negative needs 5 distinct constitutions but 2 principles give " \
           "only 4" in c_big.stderr
    names = validate(path, "-o", "constitutions.names=[concise,brief]")
    assert names.exit_code == 2 and "constitutions: principle set 'tldr-mistral' has no principle 'brief'" in \
        names.stderr
    no_file = validate(path, "-o", f"data.source.options.path={tmp_path / 'nope.jsonl'}")
    assert no_file.exit_code == 2 and "data.source.options: query file" in no_file.stderr
    held_out = validate(path, "-o", "eval.size=14")
    assert held_out.exit_code == 2 and "eval.size: data.source has 14 queries but eval.size=14" in held_out.stderr
    hub_file = validate(path, "-o", "data.eval_source={name: tldr, options: {data_files: /no/such.json}}")
    assert hub_file.exit_code == 2 and "data.eval_source.options.data_files: /no/such.json does not exist" in \
        hub_file.stderr
    batch = validate(path, "-o", "batch_size=6")  # 5 queries a half can never fill a batch of 6: warned
    assert batch.exit_code == 0 and "warning: batch_size=6 but a pool half has 5 queries" in batch.stderr


def test_principle_sets_need_usable_antitheses(tmp_path, fake_model):
    same = tmp_path / "same.yaml"
    same.write_text("name: same\ntask: tldr\nprinciples:\n"
                    "- {name: a, definition: Be brief., antithesis: Be long.}\n"
                    "- {name: b, definition: Be kind., antithesis: Be kind.}\n")
    blank = tmp_path / "blank.yaml"
    blank.write_text("name: blank\ntask: tldr\nprinciples:\n- {name: a, definition: Be brief., antithesis: '  '}\n"
                     "- {name: b, definition: Be kind., antithesis: Be cruel.}\n")
    none = tmp_path / "none.yaml"
    none.write_text("name: none\ntask: tldr\nprinciples:\n- {name: a, definition: Be brief.}\n")
    path = run_file(tmp_path, fake_model)
    result = validate(path, "-o", f"principles={same}")
    assert result.exit_code == 2 and "principle 'b' has the same text as definition and antithesis" in result.stderr
    result = validate(path, "-o", f"principles={blank}")
    assert result.exit_code == 2 and "principle 'a' has an empty antithesis" in result.stderr
    result = validate(path, "-o", f"principles={none}")
    assert result.exit_code == 2 and "principles.0.antithesis: required field is missing" in result.stderr


def test_evaluators_are_checked_against_the_judge_and_the_principles(tmp_path, fake_model):
    path = edit(run_file(tmp_path, fake_model), evaluators=[
        {"name": "win-rate"}, {"name": "mi", "options": {"principle_names": ["concise", "nope"]}}])
    result = validate(path)
    assert result.exit_code == 2
    assert "evaluators.0.name: evaluator 'win-rate' needs a judge" in result.stderr
    assert "evaluators.1.options.principle_names: principle set 'tldr-mistral' has no principle 'nope'" in \
        result.stderr
    diverse = validate(run_file(tmp_path, fake_model), "-o", "principles=tldr-diverse",
                       "-o", "constitutions.names=[concise,comprehensive]")
    assert diverse.exit_code == 2 and "evaluators.0.options.principle_names:" in diverse.stderr
    assert "enumerating is limited to 12 principles" in diverse.stderr


def test_every_problem_at_once_in_file_order(tmp_path, fake_model):
    path = edit(run_file(tmp_path, fake_model), trainer={"name": "torhc"}, principles="nope", model="./gone")
    result = validate(path)
    assert result.exit_code == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith(str(path))]
    assert [p.split(": ")[1] for p in problems] == ["model", "principles", "trainer.name"]
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == sorted(lines)


def test_validate_never_imports_torch(tmp_path, fake_model):
    path = run_file(tmp_path, fake_model)
    code = ("import sys\nfrom sami_toolkit.cli import main\n"
            f"try:\n    main(['config', 'validate', {str(path)!r}])\nexcept SystemExit as exc:\n"
            "    assert exc.code in (0, None), exc.code\n"
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'litellm', 'deepspeed', 'vllm') "
            "if m in sys.modules]\nassert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "OK (run config)" in proc.stdout


# ------------------------------------------------------------------------------------------------- run
class Exploded(AssertionError):
    pass


def _explode(*args, **kwargs):
    raise Exploded("the preflight should have stopped the run before this")


def test_run_with_a_bad_trainer_fails_before_any_model_or_sample(tmp_path, fake_model, monkeypatch):
    from sami_toolkit.run import loop

    for stage in ("evaluate", "sample", "make_pairs", "train"):
        monkeypatch.setattr(loop.SamiLoop, stage, _explode)
    monkeypatch.setattr(loop, "plan_run", _explode)  # not even the base model is resolved
    path = run_file(tmp_path, fake_model)
    start = time.monotonic()
    result = invoke(["run", str(path), "-o", "trainer.name=torhc", "-o", "sampler.options.max_new_token=3"])
    assert time.monotonic() - start < 20
    assert result.exit_code == 2, result.output
    assert "trainer.name: unknown trainer 'torhc'. Did you mean 'torch'?" in result.stderr
    assert "sampler.options.max_new_token: unknown key" in result.stderr
    assert "sampling" not in result.output and "evaluating" not in result.output
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------ eval configs
def _responses(path: Path, ids=("a", "b")) -> Path:
    path.write_text("".join(json.dumps({"id": i, "prompt": f"p {i}", "response": f"r {i}"}) + "\n" for i in ids))
    return path


def test_eval_config_is_detected_without_kind(tmp_path):
    cand, base = _responses(tmp_path / "c.jsonl"), _responses(tmp_path / "b.jsonl")
    path = tmp_path / "gate.yaml"
    path.write_text(f"candidate: {{responses: {cand}}}\nbaseline: {{responses: {base}}}\n"
                    "judge: {name: litellm, options: {model: gpt-4o}}\nprinciples: tldr-mistral\n")
    result = validate(path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"{path}: OK (eval config)"
    forced = validate(path, "--kind", "run")
    assert forced.exit_code == 2
    assert "hint: baseline, candidate are keys of eval configs" in forced.stderr and "--kind eval" in forced.stderr
    partial = tmp_path / "partial.yaml"
    partial.write_text("judge: {name: litellm}\nmetric: lc_win_rate\nmargin: 0.05\n")
    result = validate(partial)
    assert result.exit_code == 2 and "add `kind: eval` to the file or pass --kind eval" in result.stderr


def test_eval_config_preflight(tmp_path):
    base = _responses(tmp_path / "b.jsonl")
    path = tmp_path / "gate.yaml"
    path.write_text("kind: eval\n"
                    f"candidate: {{model: {tmp_path / 'gone'}, sampler: {{name: hf, options: {{max_new_token: 9}}}}}}\n"
                    f"baseline: {{responses: {tmp_path / 'missing.jsonl'}}}\n"
                    "judge: {name: litelm}\nprinciples: tldr-mistral\nprinciple_names: [concise, nope]\n"
                    f"prompts: {{path: {base}}}\n")
    result = validate(path)
    assert result.exit_code == 2
    for expected in (f"{path}:2: candidate.model: model path {tmp_path / 'gone'} does not exist",
                     f"{path}:2: candidate.sampler.options.max_new_token: unknown key; did you mean "
                     "'max_new_tokens'?",
                     f"{path}:3: baseline.responses: {tmp_path / 'missing.jsonl'}: no such file",
                     f"{path}:4: judge.name: unknown judge 'litelm'. Did you mean 'litellm'?",
                     f"{path}:6: principle_names: principle set 'tldr-mistral' has no principle 'nope'"):
        assert expected in result.stderr, result.stderr


def test_eval_compare_runs_the_preflight_before_judging(tmp_path, sami_kit_registry, sami_kit_fakes, monkeypatch):
    from sami_toolkit.evaluation import compare

    monkeypatch.setattr(compare, "run_compare", _explode)
    cand = _responses(tmp_path / "c.jsonl")
    result = invoke(["eval", "compare", "--candidate", str(cand), "--baseline", str(tmp_path / "none.jsonl"),
                     "--judge", "constant", "--judge-option", "verdictt=A", "--principles", "tldr-mistral"],
                    sami_kit_registry)
    assert result.exit_code == 2, result.output
    assert "baseline.responses:" in result.stderr and "none.jsonl" in result.stderr
    assert "judge.options.verdictt: unknown key; did you mean 'verdict'? (`sami-kit judges show constant`" in \
        result.stderr


def test_eval_mi_runs_the_preflight_before_loading(tmp_path, monkeypatch):
    from sami_toolkit.evaluation.mi import MIEvaluator

    monkeypatch.setattr(MIEvaluator, "evaluate", _explode)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "hello"}\n')
    result = invoke(["eval", "mi", str(tmp_path / "no-checkpoint"), "--principles", "tldr-mistral", "--prompts",
                     str(prompts), "--sampler-option", "max_new_token=4", "-o", "principle_names=[nope]"])
    assert result.exit_code == 2, result.output
    assert f"CHECKPOINT: model path {tmp_path / 'no-checkpoint'} does not exist" in result.stderr
    assert "--sampler-option.max_new_token: unknown key; did you mean 'max_new_tokens'?" in result.stderr
    assert "-o.principle_names: principle set 'tldr-mistral' has no principle 'nope'" in result.stderr


def test_eval_commands_document_their_own_overrides():
    compare_help = " ".join(invoke(["eval", "compare", "--help"]).stdout.split())
    assert "-o margin=0.05" in compare_help and "config schema --kind eval" in compare_help
    assert "train.lr" not in compare_help  # a run-config key means nothing to eval compare
    mi_help = " ".join(invoke(["eval", "mi", "--help"]).stdout.split())
    assert "evaluators show mi" in mi_help and "-o batch_size=4" in mi_help


def test_preflight_library_api(tmp_path, fake_model):
    """Python callers get the same check: problems collected, a ConfigError listing them all."""
    config = load_run_config(run_file(tmp_path, fake_model), ["trainer.name=torhc", "sampler.name=hff"])
    check = check_run_config(config, load_plugins())
    assert [p.field for p in check.problems] == ["sampler.name", "trainer.name"]
    with pytest.raises(ConfigError, match="trainer.name: unknown trainer"):
        check.raise_for_problems()
