"""Fuzz the CLI's inputs (issue 14 §3): no mutation of a config or an input file crashes a command.

Seeded and bounded (a few hundred in-process invocations, well under 30 s): every case mutates one valid input —
wrong types, unknown keys, negative and huge numbers, bad bytes, broken or truncated JSONL lines, duplicate ids,
empty files — and runs a command on it with the offline fakes (``constant`` judge). Each must end with a
documented exit code (0 ok, 2 usage/config error, 3 inconclusive, 4 infrastructure), never 1 (which means
"regression" to CI), never a traceback, and never the guard's "internal error" line (the guard turns a crash into
exit 4, so the fuzz checks for that line explicitly: an internal error is a bug this test is meant to find).

On a failure the message holds the case's name and the mutated input, so it can be replayed by hand.
"""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from click.testing import CliRunner

from sami_toolkit.cli import cli

SEED = 14
ALLOWED_EXIT_CODES = {0, 2, 3, 4}

#: values put in place of a valid one: wrong types, negative / huge / non-finite numbers, odd strings
ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, -(2**70), 2**70, 2**32, 1e308, -1e308, float("nan"), float("inf"), 0.5, -0.5,
    "", "x", "é\u2028\x00", "a" * 5000, "1e12", "[", "{a: 1}", [], [1, "a", None], {}, {"bogus": 1},
    [{"name": "x"}] * 3,
]

BAD_BYTES = [b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\x80abc"]


# --------------------------------------------------------------------------------------------- mutators
def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) into a JSON-like value, the root excluded."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.append((*prefix, index))
            out.extend(_paths(value, (*prefix, index)))
    return out


def _containers(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if isinstance(node, dict) else []
    for path in _paths(node, prefix):
        value = _get(node, path[len(prefix):])
        if isinstance(value, dict):
            out.append(path)
    return out


def _get(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


def mutate_data(data: Any, rng: random.Random) -> tuple[Any, str]:
    """One structural mutation of a mapping: a value replaced, a key dropped, an unknown or misspelt key added."""
    data = copy.deepcopy(data)
    paths = _paths(data)
    kind = rng.choice(["replace", "replace", "replace", "delete", "unknown", "misspell"])
    if kind in ("replace", "delete") and paths:
        path = rng.choice(paths)
        parent = _get(data, path[:-1])
        if kind == "delete":
            del parent[path[-1]]
            return data, f"delete {'.'.join(map(str, path))}"
        value = copy.deepcopy(rng.choice(ODD_VALUES))
        parent[path[-1]] = value
        return data, f"set {'.'.join(map(str, path))} = {value!r:.60}"
    container_path = rng.choice(_containers(data))
    container = _get(data, container_path)
    if kind == "misspell" and container:
        key = rng.choice(list(container))
        container[f"{key}s"] = container.pop(key)
        return data, f"rename {'.'.join(map(str, (*container_path, key)))} -> {key}s"
    container["bogus_key"] = 1
    return data, f"add {'.'.join(map(str, (*container_path, 'bogus_key')))}"


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One byte-level mutation: bad bytes inserted, truncated, emptied, a line duplicated or broken, garbage."""
    kind = rng.choice(["bad-bytes", "bad-bytes", "truncate", "empty", "duplicate-line", "break-line", "garbage",
                       "blank-lines", "bom"])
    if kind == "bad-bytes":
        offset = rng.randrange(len(data) + 1)
        bad = rng.choice(BAD_BYTES)
        return data[:offset] + bad + data[offset:], f"insert {bad!r} at {offset}"
    if kind == "truncate":
        offset = rng.randrange(len(data) + 1)
        return data[:offset], f"truncate at {offset}"
    if kind == "empty":
        return b"", "empty file"
    lines = data.split(b"\n")
    if kind == "duplicate-line":
        index = rng.randrange(len(lines))
        return b"\n".join(lines[: index + 1] + lines[index:]), f"duplicate line {index + 1}"
    if kind == "break-line":
        index = rng.randrange(len(lines))
        lines[index] = lines[index][: max(0, len(lines[index]) // 2)] + b'"{'
        return b"\n".join(lines), f"break line {index + 1}"
    if kind == "blank-lines":
        return b"\n\n" + data.replace(b"\n", b"\n\n   \n"), "blank lines"
    if kind == "bom":
        return b"\xef\xbb\xbf" + data, "byte order mark"
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))), "random bytes"


def mutate_file(path: Path, base: Any, rng: random.Random, dump: Callable[[Any], bytes]) -> str:
    """Write one mutation of ``base`` to ``path`` (structural or byte-level) and describe it."""
    if rng.random() < 0.55:
        data, what = mutate_data(base, rng)
        path.write_bytes(dump(data))
        return f"{path.name}: {what}"
    data, what = mutate_bytes(dump(base), rng)
    path.write_bytes(data)
    return f"{path.name}: {what}"


def dump_yaml(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8")


def dump_jsonl(rows: Any) -> bytes:
    if not isinstance(rows, list):
        rows = [rows]
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


# ----------------------------------------------------------------------------------------------- inputs
def run_config() -> dict[str, Any]:
    from sami_toolkit.run.config import preset_data

    data = {"kind": "run", **preset_data("demo")}
    data["judge"] = {"name": "constant", "options": {"verdict": "A"}}
    data["evaluators"] = [{"name": "mi", "options": {"batch_size": 2}}, {"name": "win-rate"}]
    return data


def responses(side: str, n: int = 6) -> list[dict[str, Any]]:
    return [{"id": f"q{i}", "prompt": f"Question {i}?", "response": f"{side} answer {i}"} for i in range(n)]


def eval_config(tmp: Path) -> dict[str, Any]:
    return {"kind": "eval", "candidate": {"responses": str(tmp / "cand.jsonl"), "label": "cand"},
            "baseline": {"responses": str(tmp / "base.jsonl")}, "task": "generic",
            "constitution": "1. Be helpful.\n2. Be honest.", "judge": {"name": "constant", "options": {"verdict": "A"}},
            "seed": 1, "metric": "win_rate", "margin": 0.05, "ties": "half", "bootstrap": 50,
            "output": {"dir": str(tmp / "out")}}


def judgments(n: int = 8) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append({"id": f"q{i}", "outcome": [1, 0, 0.5, None][i % 4], "len_test": 10 + i, "len_baseline": 12,
                     "candidate_position": "AB"[i % 2], "verdicts": ["A"], "failed": i % 4 == 3,
                     "stats_settings": {"ties": "half", "bootstrap": 50, "seed": 1}})
    return rows


def principle_set() -> dict[str, Any]:
    return {"name": "fuzz", "task": "tldr", "writer": "test",
            "principles": [{"name": "concise", "definition": "Be brief.", "antithesis": "Be long-winded."},
                           {"name": "kind", "definition": "Be kind.", "antithesis": "Be rude."}],
            "train_principles": ["concise"], "held_out_principles": ["kind"]}


# ----------------------------------------------------------------------------------------------- harness
@pytest.fixture
def invoke(sami_kit_fakes, sami_kit_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMI_KIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def _invoke(args: list[str], case: str, expect: set[int] = ALLOWED_EXIT_CODES) -> int:
        result = runner.invoke(cli, args, obj=sami_kit_registry)
        output = result.output
        context = f"case [{case}] `sami-kit {' '.join(args)}` -> exit {result.exit_code}\n{output[-3000:]}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}\n{context}")
        assert result.exit_code in expect, context
        assert "Traceback" not in output, context
        assert "internal error" not in output, context
        _invoke.codes[result.exit_code] = _invoke.codes.get(result.exit_code, 0) + 1  # type: ignore[attr-defined]
        if os.environ.get("SAMI_FUZZ_VERBOSE"):
            last = (output.strip().splitlines() or [""])[-1]
            print(f"{result.exit_code} [{case}] {last[:150]}")
        return result.exit_code

    _invoke.codes = {}  # type: ignore[attr-defined]
    _invoke.registry = sami_kit_registry  # type: ignore[attr-defined]
    yield _invoke
    print(f"exit codes: {dict(sorted(_invoke.codes.items()))}")  # type: ignore[attr-defined]


def _cases(count: int, salt: int) -> list[random.Random]:
    return [random.Random(SEED * 1000 + salt * 100_000 + i) for i in range(count)]


def test_fuzz_config_validate_run(invoke, tmp_path):
    base = run_config()
    path = tmp_path / "run.yaml"
    path.write_bytes(dump_yaml(base))
    invoke(["config", "validate", str(path)], "valid run config", {0})
    for rng in _cases(60, 1):
        case = mutate_file(path, base, rng, dump_yaml)
        invoke(["config", "validate", str(path)], case)


OVERRIDES = ["evaluators.1.name=win-rate", "evaluators.7.name=x", "evaluators.x=1", "seed=1180591620717411303424",
             "seed=-1", "filter.max_chars=-1", "iterations=0", "train.lr=[", "a..b=1", "=3", "noequals",
             "sampler.options.max_new_token=3", "trainer.name=torhc", "data.source=null", "data.source.name=5",
             "constitutions.n=1000", "constitutions.n=-2", "judge.options.verdict=Z", "extends=demo", "kind=eval",
             "templates.stop=3", "train.micro_batch_size=0", "eval.size=1e12", "model.x=1"]


def test_fuzz_config_validate_overrides(invoke, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(dump_yaml(run_config()))
    for text in OVERRIDES:
        invoke(["config", "validate", str(path), "-o", text], f"-o {text}")
    rng = random.Random(SEED)
    for _ in range(10):
        picked = rng.sample(OVERRIDES, 3)
        invoke(["config", "validate", str(path), *[a for t in picked for a in ("-o", t)]], f"-o {picked}")


def test_fuzz_config_validate_eval(invoke, tmp_path):
    (tmp_path / "cand.jsonl").write_bytes(dump_jsonl(responses("cand")))
    (tmp_path / "base.jsonl").write_bytes(dump_jsonl(responses("base")))
    base = eval_config(tmp_path)
    path = tmp_path / "eval.yaml"
    path.write_bytes(dump_yaml(base))
    invoke(["config", "validate", str(path)], "valid eval config", {0})
    for rng in _cases(40, 2):
        case = mutate_file(path, base, rng, dump_yaml)
        invoke(["config", "validate", str(path)], case)


def test_fuzz_eval_compare_config(invoke, tmp_path):
    (tmp_path / "cand.jsonl").write_bytes(dump_jsonl(responses("cand")))
    (tmp_path / "base.jsonl").write_bytes(dump_jsonl(responses("base")))
    base = eval_config(tmp_path)
    path = tmp_path / "eval.yaml"
    path.write_bytes(dump_yaml(base))
    invoke(["eval", "compare", "--config", str(path)], "valid eval config", {0, 3})
    for rng in _cases(30, 3):
        case = mutate_file(path, base, rng, dump_yaml)
        invoke(["eval", "compare", "--config", str(path)], case)


def test_fuzz_eval_compare_inputs(invoke, tmp_path):
    """Responses files (both sides), a prompts file and query-source data (jsonl and csv), one mutated at a time."""
    config = eval_config(tmp_path)
    cand, base_file = tmp_path / "cand.jsonl", tmp_path / "base.jsonl"
    prompts = [{"id": f"q{i}", "prompt": f"Question {i}?"} for i in range(6)]
    queries = [{"id": f"q{i}", "text": f"Question {i}?"} for i in range(6)]
    csv_text = "id,text\n" + "".join(f"q{i},Question {i}?\n" for i in range(6))
    variants = {
        "cand": (cand, responses("cand"), dump_jsonl, {}),
        "base": (base_file, responses("base"), dump_jsonl, {}),
        "prompts": (tmp_path / "prompts.jsonl", prompts, dump_jsonl, {"prompts": {"path": "prompts.jsonl"}}),
        "jsonl-source": (tmp_path / "q.jsonl", queries, dump_jsonl,
                         {"prompts": {"name": "jsonl", "options": {"path": "q.jsonl"}}}),
        "csv-source": (tmp_path / "q.csv", None, None, {"prompts": {"name": "csv", "options": {"path": "q.csv"}}}),
    }
    path = tmp_path / "eval.yaml"
    for index, rng in enumerate(_cases(50, 4)):
        name = list(variants)[index % len(variants)]
        cand.write_bytes(dump_jsonl(responses("cand")))
        base_file.write_bytes(dump_jsonl(responses("base")))
        target, rows, dump, extra = variants[name]
        path.write_bytes(dump_yaml({**config, **extra}))
        if rows is None:  # csv: byte-level mutations only
            data, what = mutate_bytes(csv_text.encode(), rng)
            target.write_bytes(data)
            case = f"{target.name}: {what}"
        else:
            case = mutate_file(target, rows, rng, dump)
        invoke(["eval", "compare", "--config", str(path)], case)


def test_fuzz_eval_compare_flags(invoke, tmp_path):
    (tmp_path / "cand.jsonl").write_bytes(dump_jsonl(responses("cand")))
    (tmp_path / "base.jsonl").write_bytes(dump_jsonl(responses("base")))
    base = ["eval", "compare", "--candidate", "cand.jsonl", "--baseline", "base.jsonl", "--judge", "constant",
            "--constitution", "Be kind."]
    flags = [["--seed", "-1"], ["--seed", str(2**70)], ["--margin", "-0.1"], ["--margin", "0.7"],
             ["--margin", "nan"], ["--bootstrap", "1000000000"], ["--bootstrap", "1e12"], ["--bootstrap", "-5"],
             ["--max-cost", "-1"], ["--judge-option", "verdict=Z"], ["--judge-option", "nope=1"],
             ["--judge-option", "a=1", "--judge-option", "a.b=2"], ["--judge-option", "=1"],
             ["-o", "candidate.responses=missing.jsonl"], ["-o", "output.dir=cand.jsonl"], ["-o", "seed=x"],
             ["--constitution", "@missing.txt"], ["--source", "nope"], ["--prompts", "cand.jsonl", "--source", "x"],
             ["--sampler-option", "x=1"], ["--task", "tdlr"], ["--metric", "lc_win_rate", "--margin", "0"]]
    for extra in flags:
        invoke([*base, *extra], " ".join(extra))


def test_fuzz_eval_stats(invoke, tmp_path):
    base = judgments()
    path = tmp_path / "judgments.jsonl"
    path.write_bytes(dump_jsonl(base))
    invoke(["eval", "stats", str(path), "--bootstrap", "50"], "valid judgments", {0})
    for rng in _cases(50, 5):
        if rng.random() < 0.6:  # a mutation inside one row, so the file stays a list of objects
            rows = copy.deepcopy(base)
            index = rng.randrange(len(rows))
            rows[index], what = mutate_data(rows[index], rng)
            path.write_bytes(dump_jsonl(rows))
            case = f"row {index + 1}: {what}"
        else:
            case = mutate_file(path, base, rng, dump_jsonl)
        args = ["eval", "stats", str(path), "--bootstrap", str(rng.choice([0, 50]))]
        invoke(args + (["--json"] if rng.random() < 0.5 else []), case)


def test_fuzz_principles_show(invoke, tmp_path):
    base = principle_set()
    path = tmp_path / "principles.yaml"
    path.write_bytes(dump_yaml(base))
    invoke(["principles", "show", str(path)], "valid principle set", {0})
    for rng in _cases(40, 6):
        case = mutate_file(path, base, rng, dump_yaml)
        invoke(["principles", "show", str(path)], case)


# ------------------------------------------------------------------- the observed cases, one by one (§3)
def _bad(path: Path, data: bytes) -> Path:
    path.write_bytes(data[:20] + b"\xff\xfe" + data[20:])
    return path


@pytest.mark.parametrize("target", ["run-config", "run-command", "principles", "run-principles", "query-data",
                                    "eval-config", "responses", "prompts", "judgments"])
def test_non_utf8_bytes_in_every_input_are_exit_2(invoke, tmp_path, target):
    """Each input the issue lists, with two bytes that are not UTF-8: one ``FILE: not UTF-8 text`` line, exit 2."""
    (tmp_path / "cand.jsonl").write_bytes(dump_jsonl(responses("cand")))
    (tmp_path / "base.jsonl").write_bytes(dump_jsonl(responses("base")))
    config = eval_config(tmp_path)
    run = run_config()
    if target in ("run-config", "run-command"):
        bad = _bad(tmp_path / "run.yaml", dump_yaml(run))
        args = ["config", "validate", str(bad)] if target == "run-config" else ["run", str(bad)]
    elif target == "principles":
        bad = _bad(tmp_path / "p.yaml", dump_yaml(principle_set()))
        args = ["principles", "show", str(bad)]
    elif target == "run-principles":
        bad = _bad(tmp_path / "p.yaml", dump_yaml(principle_set()))
        (tmp_path / "run.yaml").write_bytes(dump_yaml({**run, "principles": str(bad)}))
        args = ["run", str(tmp_path / "run.yaml")]
    elif target == "query-data":
        bad = _bad(tmp_path / "q.jsonl", dump_jsonl([{"id": f"q{i}", "text": "t"} for i in range(6)]))
        (tmp_path / "eval.yaml").write_bytes(dump_yaml(
            {**config, "prompts": {"name": "jsonl", "options": {"path": str(bad)}}}))
        args = ["eval", "compare", "--config", str(tmp_path / "eval.yaml")]
    elif target == "eval-config":
        bad = _bad(tmp_path / "eval.yaml", dump_yaml(config))
        args = ["eval", "compare", "--config", str(bad)]
    elif target in ("responses", "prompts"):
        if target == "responses":
            bad = _bad(tmp_path / "cand.jsonl", dump_jsonl(responses("cand")))
        else:
            bad = _bad(tmp_path / "prompts.jsonl", dump_jsonl([{"id": f"q{i}", "prompt": "p"} for i in range(6)]))
        args = ["eval", "compare", "--candidate", "cand.jsonl", "--baseline", "base.jsonl", "--judge", "constant",
                "--constitution", "Be kind.", *(["--prompts", str(bad)] if target == "prompts" else [])]
    else:
        bad = _bad(tmp_path / "j.jsonl", dump_jsonl(judgments()))
        args = ["eval", "stats", str(bad)]
    result = CliRunner().invoke(cli, args, obj=invoke.registry)
    assert result.exit_code == 2, result.output
    assert "not UTF-8 text (byte 0xff" in result.stderr and bad.name in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_seed_and_list_index_and_extends_cycle_through_run(invoke, tmp_path):
    """``run`` itself rejects them at validation, before any model loads (exit 2, no traceback)."""
    path = tmp_path / "run.yaml"
    path.write_bytes(dump_yaml(run_config()))
    for extra, expected in ((["-o", "seed=1180591620717411303424"], "seed: Input should be less than or equal to"),
                            (["-o", "evaluators.2.name=win-rate"], "'evaluators' has 2 entries"),
                            (["-o", "filter.max_chars=-1"], "filter.max_chars: Input should be greater than")):
        result = CliRunner().invoke(cli, ["run", str(path), *extra], obj=invoke.registry)
        assert result.exit_code == 2 and expected in result.stderr, result.output
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "loop.yaml")], obj=invoke.registry)
    assert result.exit_code == 2 and "extends: cycle" in result.stderr, result.output
