"""``sami-kit principles`` and ``sami-kit config`` through click's CliRunner: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, ConfigDict, Field

from sami_toolkit.cli import cli
from sami_toolkit.cli import config_cmd


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


# --------------------------------------------------------------------------------------------- principles
def test_principles_list_json_and_table():
    result = invoke("principles", "list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["hh-rlhf", "tldr-diverse", "tldr-mistral", "tldr-opus"]
    assert rows[0]["principles"] == ["helpful", "harmless"] and rows[0]["task"] == "hh-rlhf"
    table = invoke("principles", "list")
    assert table.exit_code == 0 and "tldr-opus" in table.stdout


def test_principles_show_constitutions_in_table_order():
    result = invoke("principles", "show", "tldr-mistral", "--constitutions")
    assert result.exit_code == 0
    out = result.stdout
    labels = ["concise, comprehensive", "not concise, comprehensive", "concise, not comprehensive",
              "not concise, not comprehensive"]
    positions = [out.index(f"] {label}\n") for label in labels]
    assert positions == sorted(positions)
    assert ("not concise, not comprehensive\n1. Summaries should be lengthy and include unnecessary details.\n"
            "2. Summaries should be incomplete and omit important information.") in out


def test_principles_show_json_with_subset():
    result = invoke("principles", "show", "tldr-diverse", "--principles", "poetic,sarcastic", "--constitutions",
                    "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [p["name"] for p in data["principles"]] == ["poetic", "sarcastic"]
    assert len(data["constitutions"]) == 4
    assert data["constitutions"][3]["label"] == "not poetic, not sarcastic"
    assert data["constitutions"][3]["text"] == ("1. Summaries should use plain, literal language.\n"
                                                "2. Summaries should be genuine and sincere.")
    assert data["held_out_principles"][-1] == "sarcastic"


def test_principles_show_errors_exit_2(tmp_path):
    result = invoke("principles", "show", "tldr-misral")
    assert result.exit_code == 2 and "Did you mean 'tldr-mistral'" in result.stderr
    too_many = invoke("principles", "show", "tldr-diverse", "--constitutions")
    assert too_many.exit_code == 2 and "--principles" in too_many.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprinciples: [a\n", encoding="utf-8")
    result = invoke("principles", "show", str(bad))
    assert result.exit_code == 2 and f"{bad}:3:1: invalid YAML" in result.stderr


def test_principles_show_user_file(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: mine\ntask: generic\nprinciples:\n- {name: kind, definition: Be kind., "
                    "antithesis: Be unkind.}\n", encoding="utf-8")
    result = invoke("principles", "show", str(mine), "--constitutions")
    assert result.exit_code == 0 and "[2] not kind\n1. Be unkind." in result.stdout


def test_principles_group_has_write():
    result = invoke("principles", "--help")
    assert result.exit_code == 0
    assert all(cmd in result.stdout for cmd in ("list", "show", "write"))


# ------------------------------------------------------------------------------------------------ config
class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = Field(1e-6, description="Learning rate.")


class DemoRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="Model.")
    steps: int = Field(2, description="Steps.")
    train: Inner = Field(default_factory=Inner, description="Training.")


class DemoEval(BaseModel):
    model_config = ConfigDict(extra="forbid")
    judge: str = Field(description="Judge.")


@pytest.fixture
def demo_models(monkeypatch):
    monkeypatch.setitem(config_cmd.CONFIG_MODELS, "run", DemoRun)
    monkeypatch.setitem(config_cmd.CONFIG_MODELS, "eval", DemoEval)


def write(tmp_path, text: str, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_config_validate_ok_and_kind_detection(tmp_path, demo_models):
    run = write(tmp_path, "model: tiny\ntrain:\n  lr: 1e-5\n")
    result = invoke("config", "validate", run)
    assert result.exit_code == 0 and result.stdout.strip() == f"{run}: OK (run config)"
    ev = write(tmp_path, "kind: eval\njudge: constant\n", "e.yaml")
    result = invoke("config", "validate", ev)
    assert result.exit_code == 0 and "OK (eval config)" in result.stdout
    conflict = invoke("config", "validate", ev, "--kind", "run")
    assert conflict.exit_code == 2 and "the file says kind: eval" in conflict.stderr
    weird = write(tmp_path, "kind: training\nmodel: x\n", "w.yaml")
    result = invoke("config", "validate", weird)
    assert result.exit_code == 2 and f"{weird}:1: kind: must be one of run, eval (got 'training')" in result.stderr


def test_config_validate_reports_each_problem_with_line(tmp_path, demo_models):
    path = write(tmp_path, "model: tiny\nsteps: many\ntrain:\n  lrr: 0.1\nextra_key: 1\n")
    result = invoke("config", "validate", path)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{path}:2: steps: Input should be a valid integer, unable to parse string as an integer (got 'many')",
        f"{path}:4: train.lrr: unknown key; did you mean 'lr'? (`sami-kit config schema` lists every key)",
        f"{path}:5: extra_key: unknown key (not allowed here; check the spelling, `sami-kit config schema` "
        "lists every key)",
    ]


def test_config_validate_overrides_missing_field_and_bad_yaml(tmp_path, demo_models):
    path = write(tmp_path, "model: tiny\n")
    assert invoke("config", "validate", path, "-o", "train.lr=5e-5", "-o", "steps=3").exit_code == 0
    result = invoke("config", "validate", path, "-o", "steps=lots")
    assert result.exit_code == 2 and "steps: Input should be a valid integer" in result.stderr
    assert invoke("config", "validate", path, "-o", "nokeyvalue").exit_code == 2
    missing = write(tmp_path, "steps: 3\n", "m.yaml")
    result = invoke("config", "validate", missing)
    assert result.exit_code == 2 and "model: required field is missing" in result.stderr
    bad = write(tmp_path, "model: tiny\ntrain: {lr: 1\n", "bad.yaml")
    result = invoke("config", "validate", bad)
    assert result.exit_code == 2 and result.stderr.startswith(f"{bad}:3:1: invalid YAML")
    nofile = invoke("config", "validate", str(tmp_path / "nope.yaml"))
    assert nofile.exit_code == 2 and "no such file" in nofile.stderr
    top = write(tmp_path, "- a\n- b\n", "list.yaml")
    assert invoke("config", "validate", top).exit_code == 2


def test_config_schema(demo_models):
    result = invoke("config", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert set(schema["properties"]) == {"model", "steps", "train"}
    assert json.loads(invoke("config", "schema", "--kind", "eval").stdout)["required"] == ["judge"]


def test_config_missing_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(config_cmd.CONFIG_MODELS, "eval", "sami_toolkit.no_such_config:Nope")
    result = invoke("config", "schema", "--kind", "eval")
    assert result.exit_code == 4
    assert "module sami_toolkit.no_such_config is missing" in result.stderr


def test_real_run_config_if_present(tmp_path):
    pytest.importorskip("sami_toolkit.run.config")
    result = invoke("config", "schema", "--kind", "run")
    assert result.exit_code == 0 and "properties" in json.loads(result.stdout)
    path = write(tmp_path, "kind: run\nno_such_setting_anywhere: 1\n")
    result = invoke("config", "validate", path)
    assert result.exit_code == 2 and f"{path}:2: no_such_setting_anywhere: unknown key" in result.stderr
    # extends: a parent file is merged first, so its keys are validated too
    write(tmp_path, "parent_only_bogus_key: 1\n", "parent.yaml")
    child = write(tmp_path, "extends: parent.yaml\nseed: 1\n", "child.yaml")
    result = invoke("config", "validate", child)
    assert result.exit_code == 2 and "parent_only_bogus_key: unknown key" in result.stderr
    assert "extends: unknown key" not in result.stderr


def test_command_modules_import_only_click_and_stdlib():
    code = ("import sys, sami_toolkit.cli.config_cmd, sami_toolkit.cli.principles_cmd\n"
            "heavy = [m for m in ('pydantic', 'yaml', 'rich', 'torch', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_detect_kind_recognises_eval_configs_without_kind():
    """Only eval configs have candidate/baseline: such a file is validated as one without `kind: eval`."""
    assert config_cmd.detect_kind({"candidate": {}, "judge": {}}, None, "f.yaml") == "eval"
    assert config_cmd.detect_kind({"baseline": {}}, None, "f.yaml") == "eval"
    assert config_cmd.detect_kind({"model": "x", "judge": {}}, None, "f.yaml") == "run"
    assert config_cmd.detect_kind({"candidate": {}}, "run", "f.yaml") == "run"  # --kind wins
    assert config_cmd.detect_kind({"kind": "run", "candidate": {}}, None, "f.yaml") == "run"
