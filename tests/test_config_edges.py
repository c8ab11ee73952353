"""Config and input files that used to crash with a traceback (issue 14 §3): each is now one clear line, exit 2.

Covered here at the loader level (the CLI level, exit codes and "no Traceback", is tests/test_fuzz_cli.py and
tests/test_cli_core.py): non-UTF-8 bytes in a run config, eval config and principles file; an ``extends:`` cycle;
``filter.max_chars: -1``; seeds outside 0..2**32-1; ``-o evaluators.1.name=...`` past the end of the list; NUL
bytes and control characters; malformed CSV / JSONL query files.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sami_toolkit.cli import cli
from sami_toolkit.core.config import apply_overrides, load_yaml
from sami_toolkit.core.errors import ConfigError
from sami_toolkit.run.config import load_run_config

BASE = ("name: x\nmodel: smollm2\nprinciples: tldr-mistral\n"
        "data: {source: {name: jsonl, options: {path: q.jsonl}}}\n")


def _validate(args: list[str]):
    result = CliRunner().invoke(cli, ["config", "validate", *args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


# ------------------------------------------------------------------------------------------- bad bytes
def test_non_utf8_yaml_names_the_file_and_byte(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(BASE.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not UTF-8 text \(byte 0xe9 at offset \d+\)"):
        load_yaml(path)
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_run_config(path)
    result = _validate([str(path)])
    assert result.exit_code == 2 and "not UTF-8 text" in result.stderr


def test_non_utf8_eval_config_and_principles_file(tmp_path):
    eval_cfg = tmp_path / "eval.yaml"
    eval_cfg.write_bytes(b"kind: eval\ncandidate: {responses: a.jsonl}\nbaseline: {responses: b.jsonl}\n"
                         b"judge: {name: constant}\nconstitution: \"Be kind \xff\"\n")
    result = _validate([str(eval_cfg)])
    assert result.exit_code == 2 and f"{eval_cfg}: not UTF-8 text (byte 0xff" in result.stderr
    principles = tmp_path / "p.yaml"
    principles.write_bytes(b"name: p\ntask: tldr\nprinciples:\n  - {name: a, definition: \"d\xfe\", antithesis: x}\n")
    result = CliRunner().invoke(cli, ["principles", "show", str(principles)])
    assert result.exit_code == 2 and "not UTF-8 text" in result.stderr and "Traceback" not in result.output


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_yaml(path)["name"] == "x"


def test_deeply_nested_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(path)


# ---------------------------------------------------------------------------------------------- extends
def test_extends_cycle_names_the_chain(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: c.yaml\nname: b\n")
    (tmp_path / "c.yaml").write_text("extends: a.yaml\nname: c\n")
    a = tmp_path / "a.yaml"
    with pytest.raises(ConfigError) as excinfo:
        load_run_config(a)
    message = str(excinfo.value)
    assert "extends: cycle" in message
    assert message.index("a.yaml") < message.index("b.yaml") < message.index("c.yaml")
    assert message.split("cycle ")[1].split("\n")[0].endswith("a.yaml")
    result = _validate([str(a)])
    assert result.exit_code == 2 and "extends: cycle" in result.stderr


def test_a_file_extending_itself_and_a_bad_extends_value(tmp_path):
    own = tmp_path / "self.yaml"
    own.write_text("extends: self.yaml\n" + BASE)
    with pytest.raises(ConfigError, match=r"extends: cycle .*self\.yaml -> .*self\.yaml"):
        load_run_config(own)
    bad = tmp_path / "list.yaml"
    bad.write_text("extends: [demo]\n" + BASE)
    with pytest.raises(ConfigError, match=r"extends: expected a preset name .* got \['demo'\]"):
        load_run_config(bad)


def test_a_parent_file_may_be_a_complete_kind_run_config(tmp_path):
    (tmp_path / "parent.yaml").write_text("kind: run\nextends: demo\nname: parent\n")
    child = tmp_path / "child.yaml"
    child.write_text("kind: run\nextends: parent.yaml\niterations: 1\n")
    config = load_run_config(child)
    assert config.name == "parent" and config.iterations == 1 and config.model == "smollm2"


# ------------------------------------------------------------------------------------------ validation
def test_filter_values_are_validated_with_the_field_named(tmp_path):
    path = tmp_path / "neg.yaml"
    path.write_text("kind: run\nextends: demo\nfilter: {max_chars: -1}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_run_config(path)
    assert str(excinfo.value) == f"{path}:3: filter.max_chars: Input should be greater than or equal to 1 (got -1)"
    result = _validate([str(path)])
    assert result.exit_code == 2 and "filter.max_chars: Input should be greater than or equal to 1" in result.stderr
    with pytest.raises(ConfigError, match=r"filter.require_distinct: Input should be a valid boolean"):
        load_run_config(preset="demo", overrides=["filter.require_distinct=maybe"])
    with pytest.raises(ConfigError, match=r"filter: unknown key 'max_char'; did you mean 'max_chars'\?"):
        load_run_config(preset="demo", overrides=["filter.max_char=3"])


def test_unknown_task_and_bad_template_override_are_field_errors():
    with pytest.raises(ConfigError, match=r"task: unknown task 'tdlr'\. Did you mean 'tldr'\?"):
        load_run_config(preset="demo", overrides=["task=tdlr"])
    with pytest.raises(ConfigError, match=r"templates: prompt template override 'stopp' is not a template field"):
        load_run_config(preset="demo", overrides=["templates.stopp=[x]"])


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_run_seed_is_bounded(seed):
    with pytest.raises(ConfigError, match=r"seed: Input should be (greater|less) than or equal to"):
        load_run_config(preset="demo", overrides=[f"seed={seed}"])
    assert load_run_config(preset="demo", overrides=[f"seed={2**32 - 1}"]).seed == 2**32 - 1


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_eval_seed_is_bounded_at_validation(tmp_path, seed):
    path = tmp_path / "eval.yaml"
    path.write_text(f"kind: eval\ncandidate: {{responses: a.jsonl}}\nbaseline: {{responses: b.jsonl}}\n"
                    f"judge: {{name: constant}}\nconstitution: Be kind.\nseed: {seed}\n")
    result = _validate([str(path)])
    assert result.exit_code == 2 and f"{path}:6: seed: Input should be" in result.stderr


# ------------------------------------------------------------------------------------------- overrides
def test_list_index_past_the_end_says_how_long_the_list_is():
    data = {"evaluators": [{"name": "mi"}]}
    with pytest.raises(ConfigError) as excinfo:
        apply_overrides(data, ["evaluators.1.name=win-rate"])
    assert "'evaluators' has 1 entry (indices 0..0), so there is no index 1" in str(excinfo.value)
    assert "-o 'evaluators=[{name: ...}, ...]'" in str(excinfo.value)
    with pytest.raises(ConfigError, match=r"'evaluators' has 1 entry"):
        apply_overrides(data, ["evaluators.3=x"])
    with pytest.raises(ConfigError, match=r"'evaluators' is a list; index it with a number \(0..0\), not 'name'"):
        apply_overrides(data, ["evaluators.name=x"])
    with pytest.raises(ConfigError, match=r"'evaluators' has 0 entries, so there is no index 0"):
        apply_overrides({"evaluators": []}, ["evaluators.0.name=x"])
    assert apply_overrides(data, ["evaluators.0.options.batch_size=2"]) == {
        "evaluators": [{"name": "mi", "options": {"batch_size": 2}}]}


def test_override_below_a_null_value_is_kept():
    """``judge: null`` then ``-o judge.name=x``: the new mapping is attached (it used to be silently dropped)."""
    assert apply_overrides({"judge": None}, ["judge.name=constant"]) == {"judge": {"name": "constant"}}


def test_cli_override_past_the_end_is_exit_2(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("kind: run\nextends: demo\n")
    result = _validate([str(path), "-o", "evaluators.1.name=win-rate"])
    assert result.exit_code == 2 and "'evaluators' has 1 entry" in result.stderr


# ----------------------------------------------------------------------------------------- NUL and control
def test_a_nul_byte_in_any_config_value_is_a_field_error(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_text('kind: run\nextends: demo\nrun_dir: "runs/a\\0b"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_run_config(path)
    assert str(excinfo.value) == f"{path}:3: run_dir: contains a NUL byte (\\0), which no config value may hold"
    with pytest.raises(ConfigError, match=r"evaluators.0.options.x: contains a NUL byte"):
        load_run_config(preset="demo", overrides=['evaluators.0.options.x="\\0"'])


def test_a_raw_control_character_in_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "ctl.yaml"
    path.write_bytes(b"name: x\nmodel: a\x00b\n")
    with pytest.raises(ConfigError) as excinfo:
        load_yaml(path)
    assert str(excinfo.value).startswith(f"{path}:2:9: invalid YAML: control character U+0000 is not allowed")
    assert "\n" not in str(excinfo.value)


# ------------------------------------------------------------------------------------- query source files
def _source(kind: str, path, **options):
    from sami_toolkit.text.query_sources import CsvSource, JsonlSource

    cls = {"jsonl": JsonlSource, "csv": CsvSource}[kind]
    return cls(cls.Options(path=str(path), **options))


def test_csv_rows_longer_than_the_header_and_broken_csv_are_config_errors(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("id,text\nq0,hello\nq1,a,b,c\n")
    with pytest.raises(ConfigError, match=r"q\.csv:3: 2 columns in the header but 4 in this row"):
        _source("csv", path).load()
    path.write_text("id,text\nq0,\"" + "a" * 200_000 + "\"\n")
    with pytest.raises(ConfigError, match=r"q\.csv:\d+: invalid CSV: field larger than field limit"):
        _source("csv", path).load()
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at most 1 character"):
        _source("csv", path, delimiter=";;")


def test_query_files_with_a_bom_and_raw_line_separators(tmp_path):
    csv_path = tmp_path / "q.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfid,text\nq0,hello\n")
    assert [q.id for q in _source("csv", csv_path).load()] == ["q0"]
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + '{"id": "a", "text": "one\u2028two"}\n{"id": "b", "text": "x"}\n'.encode())
    queries = _source("jsonl", jsonl).load()
    assert [q.id for q in queries] == ["a", "b"] and queries[0].text == "one\u2028two"


def test_query_text_that_is_an_object_is_rejected(tmp_path):
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"id": "a", "text": {"nested": 1}}\n')
    with pytest.raises(ConfigError, match=r"row 1: 'text' must be text, got an object"):
        _source("jsonl", jsonl).load()
