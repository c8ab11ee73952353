"""The SAMI loop end to end on the tiny model (torch trainer), and its bad-input answers through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from run_helpers import one_thread, tiny_config  # noqa: F401 (autouse fixture)

from sami_toolkit import hookimpl
from sami_toolkit.cli import main
from sami_toolkit.builtin.hf_sampler import HFSampler
from sami_toolkit.builtin.torch_trainer import TorchTrainer

CALLS: dict[str, list] = {"train": [], "sample": []}


class SpyTrainer(TorchTrainer):
    """The real torch trainer, recording what the loop asked of it."""

    name = "spy-torch"

    def train(self, request):
        CALLS["train"].append({"base": request.base_model, "steps": request.steps, "batch": request.batch_size,
                               "pairs": str(request.pairs_path)})
        return super().train(request)


class SpySampler(HFSampler):
    name = "spy-hf"

    def generate(self, model, prompts, *, progress=None):
        CALLS["sample"].append((model, len(prompts)))
        return super().generate(model, prompts, progress=progress)


class SpyPlugin:
    @hookimpl
    def register_trainers(self, register):
        register(SpyTrainer)

    @hookimpl
    def register_samplers(self, register):
        register(SpySampler)




def run_cli(args: list[str], capsys, registry=None) -> tuple[int, str]:
    """Run the real console entry point in-process (with ``registry``'s plugins when given); returns (exit code,
    stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(args, registry=registry)
    return int(exc.value.code or 0), capsys.readouterr().err


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_two_iterations_end_to_end(tmp_path, tiny_model_dir, sami_kit_registry, sami_kit_register_plugin, capsys):
    sami_kit_register_plugin(SpyPlugin(), "spy")
    CALLS["train"].clear()
    CALLS["sample"].clear()
    config = tiny_config(tmp_path, tiny_model_dir)
    data = yaml.safe_load(config.read_text())
    data["trainer"] = {"name": "spy-torch"}
    data["sampler"]["name"] = "spy-hf"
    config.write_text(yaml.safe_dump(data))
    code, err = run_cli(["run", str(config)], capsys, sami_kit_registry)
    assert code == 0, err
    run = tmp_path / "run"

    # layout (design.md §5)
    for name in ("config.yaml", "manifest.json", "principles.yaml", "summary.md"):
        assert (run / name).is_file(), name
    for t in (1, 2):
        it = run / "iterations" / str(t)
        for name in ("samples.jsonl", "pairs.jsonl", "metrics.json", "filter.json", "train.json"):
            assert (it / name).is_file(), f"{t}/{name}"
        assert (it / "checkpoint" / "config.json").is_file()
        assert list((it / "checkpoint").glob("*.safetensors"))
        assert json.loads((it / "train.json").read_text())["precision"] == "fp32"  # reported by the trainer
    assert (run / "iterations" / "0" / "metrics.json").is_file()  # base model evaluated as t = 0

    # manifest: every stage done with a content hash; versions and plugins recorded
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert {"torch", "transformers", "sami-kit", "python"} <= set(manifest["versions"])
    assert any(p["name"] == "spy" for p in manifest["plugins"])
    for t in ("1", "2"):
        stages = manifest["iterations"][t]["stages"]
        assert set(stages) == {"sample", "pairs", "train", "eval"}
        assert all(s["status"] == "done" and s["hash"].startswith("sha256:") for s in stages.values())

    # training always starts from the base weights, for B_η = η·N_b steps (spec §2.1)
    assert [c["base"] for c in CALLS["train"]] == [str(tiny_model_dir)] * 2
    assert [c["steps"] for c in CALLS["train"]] == [1, 2]
    assert all(c["batch"] == 2 for c in CALLS["train"])
    # iteration 1 samples with the base model, iteration 2 with π_1 (the checkpoint of iteration 1)
    sample_models = {m for m, _ in CALLS["sample"]}
    assert str(tiny_model_dir) in sample_models
    assert str(run / "iterations" / "1" / "checkpoint") in sample_models
    assert str(run / "iterations" / "2" / "checkpoint") in sample_models  # evaluation of π_2

    # halves alternate (spec §2.6): posts p0-p4 then p5-p9; p10-p13 are held out
    ids1 = [r["query_id"] for r in _jsonl(run / "iterations" / "1" / "pairs.jsonl")]
    ids2 = [r["query_id"] for r in _jsonl(run / "iterations" / "2" / "pairs.jsonl")]
    assert set(ids1) <= {f"p{i}" for i in range(5)} and set(ids2) <= {f"p{i}" for i in range(5, 10)}
    samples1 = _jsonl(run / "iterations" / "1" / "samples.jsonl")
    assert sorted({r["query_id"] for r in samples1}) == sorted(f"p{i}" for i in range(5))
    assert len(samples1) == 10  # C = 2 responses per query

    # pair records have the trainer's schema; responses[j] generated under constitutions[j]
    pair = _jsonl(run / "iterations" / "1" / "pairs.jsonl")[0]
    assert set(pair) == {"query_id", "query", "constitutions", "labels", "train_prompts", "responses", "iteration"}
    assert pair["labels"][0] == "concise, comprehensive"  # positive first (spec §5.3)
    assert all(p.endswith("Summary:") for p in pair["train_prompts"])
    by_key = {(r["query_id"], r["index"]): r for r in samples1}
    assert pair["constitutions"][1] == by_key[(pair["query_id"], 1)]["constitution"]

    # metrics per iteration, and the filter accounting adds up
    metrics = json.loads((run / "iterations" / "2" / "metrics.json").read_text())
    assert "mi_infonce_constitutions" in metrics and "mi_paper" in metrics
    filt = json.loads((run / "iterations" / "2" / "filter.json").read_text())
    assert filt["kept"] + filt["dropped"] == filt["queries"] == 5
    assert "| 2 |" in (run / "summary.md").read_text()

    # the two checkpoints differ (different data and step counts)
    from sami_toolkit.core.io import hash_path

    assert hash_path(run / "iterations" / "1" / "checkpoint") != hash_path(run / "iterations" / "2" / "checkpoint")

    # a second `run` into the same directory is refused; resume of a finished run is a no-op
    code, err = run_cli(["run", str(config)], capsys, sami_kit_registry)
    assert code == 2 and "--resume" in err
    code, err = run_cli(["run", "--resume", str(run)], capsys, sami_kit_registry)
    assert code == 0, err


# -------------------------------------------------------------------------------------------- bad input
def test_missing_model_path_exit_2(tmp_path, capsys):
    config = tiny_config(tmp_path, tmp_path / "no-such-model")
    code, err = run_cli(["run", str(config)], capsys)
    assert code == 2 and "no-such-model" in err and "does not exist" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_unloadable_model_exit_4(tmp_path, capsys):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": "not a number"}')
    config = tiny_config(tmp_path, broken)
    code, err = run_cli(["run", str(config)], capsys)
    assert code == 4, err
    assert "broken-model" in err and "Traceback" not in err


def test_dataset_without_field_exit_2(tmp_path, tiny_model_dir, capsys):
    config = tiny_config(tmp_path, tiny_model_dir)
    code, err = run_cli(["run", str(config), "-o", "data.source.options.text_field=body"], capsys)
    assert code == 2
    assert "posts.jsonl" in err and "'body'" in err and "id, text" in err


def test_c_below_two_exit_2(tmp_path, tiny_model_dir, capsys):
    config = tiny_config(tmp_path, tiny_model_dir)
    code, err = run_cli(["run", str(config), "-o", "constitutions.n=1"], capsys)
    assert code == 2 and "constitutions.n" in err


def test_fewer_pairs_than_one_batch_exit_2_work_kept(tmp_path, tiny_model_dir, capsys):
    config = tiny_config(tmp_path, tiny_model_dir, evaluators=[], batch_size=6)
    code, err = run_cli(["run", str(config)], capsys)
    assert code == 2
    assert "only 5 pairs survived" in err and "batch_size=6" in err
    assert (tmp_path / "run" / "iterations" / "1" / "samples.jsonl").is_file()  # work kept
    assert len((tmp_path / "run" / "iterations" / "1" / "pairs.jsonl").read_text().splitlines()) == 5


def test_everything_filtered_exit_2(tmp_path, tiny_model_dir, capsys):
    config = tiny_config(tmp_path, tiny_model_dir, evaluators=[],
                         filter={"drop_substrings": [], "require_positive_period": False, "max_chars": 1})
    code, err = run_cli(["run", str(config)], capsys)
    assert code == 2
    assert "every one of 5 queries was filtered out" in err
    assert "too_long: 5" in err or "empty" in err


def test_resume_with_different_config_exit_2(tmp_path, tiny_model_dir, capsys):
    config = tiny_config(tmp_path, tiny_model_dir, evaluators=[], batch_size=6)
    run_cli(["run", str(config)], capsys)  # stops at the pairs stage (exit 2), leaving a run directory
    code, err = run_cli(["run", "--resume", str(tmp_path / "run"), "-o", "train.lr=0.5"], capsys)
    assert code == 2 and "different configuration" in err
    code, err = run_cli(["run", str(config), "-o", "seed=1", "--resume", str(tmp_path / "run")], capsys)
    assert code == 2 and "different configuration" in err


def test_resume_of_nothing_exit_2(tmp_path, capsys):
    code, err = run_cli(["run", "--resume", str(tmp_path)], capsys)
    assert code == 2 and "not a sami-kit run directory" in err


def test_resume_with_changed_data_exit_2(tmp_path, tiny_model_dir, capsys):
    config = tiny_config(tmp_path, tiny_model_dir, evaluators=[], batch_size=6)
    run_cli(["run", str(config)], capsys)
    posts = tmp_path / "posts.jsonl"
    lines = posts.read_text().splitlines()
    posts.write_text("\n".join(lines[::-1]) + "\n")  # same posts, different order: different halves
    code, err = run_cli(["run", "--resume", str(tmp_path / "run")], capsys)
    assert code == 2 and "query data changed" in err


def test_missing_deepspeed_plugin_falls_back_to_torch(monkeypatch):
    from rich.console import Console

    from sami_toolkit.plugins.registry import load_plugins
    from sami_toolkit.run.config import load_run_config
    from sami_toolkit.run.plan import build_trainer

    monkeypatch.setenv("SAMI_KIT_LOAD_PLUGINS", "")  # no entry-point plugins: deepspeed is "not installed"
    registry = load_plugins()
    console = Console(record=True, width=200)
    trainer = build_trainer(load_run_config(preset="demo"), console, registry=registry)
    assert trainer.name == "torch"
    assert "trainer 'deepspeed' is not installed" in console.export_text()
    with pytest.raises(Exception, match="unknown trainer 'nope'"):
        build_trainer(load_run_config(preset="demo", overrides=["trainer.name=nope"]), console, registry=registry)


@pytest.mark.slow
def test_win_rate_with_a_judge_through_the_registry(tmp_path, tiny_model_dir, sami_kit_registry, sami_kit_fakes,
                                                    capsys):
    """The loop passes the configured judge to evaluators; the fake `echo` sampler keeps this fast."""
    config = tiny_config(tmp_path, tiny_model_dir, iterations=1,
                         sampler={"name": "echo", "options": {"max_chars": 30}},
                         evaluators=[{"name": "win-rate"}], judge={"name": "constant", "options": {"verdict": "A"}})
    code, err = run_cli(["run", str(config)], capsys, sami_kit_registry)
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "iterations" / "1" / "metrics.json").read_text())
    assert 0.0 <= metrics["win_rate_vs_base"] <= 1.0
    assert metrics["pairs_kept"] + metrics["pairs_dropped"] == 5
    assert "win vs base" in (tmp_path / "run" / "summary.md").read_text()


def test_report_examples_show_the_samples_the_loop_wrote(tmp_path, sami_kit_registry, sami_kit_fakes):
    """The report's fallback examples read samples.jsonl through SampleRow: each block shows the raw responses the
    sample stage wrote (HTML-escaped) and the query text from pairs.jsonl, not empty ``<pre></pre>`` blocks."""
    import html
    import io

    from rich.console import Console

    from sami_toolkit.core.run_dir import RunDir
    from sami_toolkit.report.run_page import build_report
    from sami_toolkit.run.config import load_run_config
    from sami_toolkit.run.loop import SamiLoop
    from sami_toolkit.run.plan import plan_run

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # the echo sampler never loads it
    config = load_run_config(tiny_config(tmp_path, model, evaluators=[], sampler={
        "name": "echo", "options": {"prefix": "<b>Tom & Jerry</b> ", "max_chars": 20}}))
    plan = plan_run(config, registry=sami_kit_registry)
    run = RunDir(config.resolved_run_dir())
    run.create(config=config.model_dump(mode="json"), config_hash=config.content_hash(), seed=config.seed,
               principles=plan.pset.model_dump(mode="json"))
    loop = SamiLoop(config, run, plan, Console(file=io.StringIO()), registry=sami_kit_registry)
    loop.sample(1)
    loop.make_pairs(1)

    page = build_report(run.root)
    examples = page[page.index("iteration 1 query"):]
    first = run.read_samples(1)[0]
    responses = [r for r in run.read_samples(1) if r.query_id == first.query_id]
    assert len(responses) == 2
    for row in responses:
        assert f"<pre>{html.escape(row.raw)}</pre>" in examples and html.escape(row.label) in examples
    assert "<b>Tom & Jerry</b>" not in page  # model text is escaped
    query = next(q for q in plan.halves[0] if q.id == first.query_id)
    assert f"<pre>{html.escape(query.text)}</pre>" in examples
    assert "<pre></pre>" not in examples
