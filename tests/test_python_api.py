"""The Python API (issue 18 §6): ``sami_toolkit.run_gate`` gives the CLI's exit codes (0/1/3, and 2/4 as values, not
exceptions), ``sami_toolkit.run_compare`` takes a mapping, and the statistics functions are on the facade."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sami_toolkit
from sami_toolkit.cli import main


def _files(tmp_path: Path, cand: list[str], base: list[str]) -> tuple[str, str]:
    c, b = tmp_path / "c.jsonl", tmp_path / "b.jsonl"
    for path, texts in ((c, cand), (b, base)):
        path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q{i}?", "response": t}) + "\n"
                                for i, t in enumerate(texts)))
    return str(c), str(b)


def _config(c: str, b: str, **extra):
    return {"candidate": {"responses": c}, "baseline": {"responses": b}, "constitution": "1. Be kind.",
            "judge": {"name": "constant", "options": {"verdict": "A"}}, "bootstrap": 100, **extra}


def test_run_gate_returns_the_cli_exit_codes(sami_kit_fakes, sami_kit_registry, tmp_path, capsys):
    c, b = _files(tmp_path, ["x"] * 40, ["y"] * 40)
    out = sami_toolkit.run_gate(_config(c, b), registry=sami_kit_registry, write_outputs=False)
    assert out.exit_code == 3 and out.decision == "inconclusive" and out.error is None  # slot A wins ~half
    with pytest.raises(SystemExit) as exc:
        main(["eval", "compare", "--candidate", c, "--baseline", b, "--constitution", "1. Be kind.", "--judge",
              "constant", "--bootstrap", "100"], registry=sami_kit_registry)
    capsys.readouterr()
    assert int(exc.value.code) == out.exit_code
    bad = sami_toolkit.run_gate(_config(c, b, margin=0.7), registry=sami_kit_registry)
    assert bad.exit_code == 2 and "margin" in bad.error and bad.result is None
    broken = sami_toolkit.run_gate(_config(c, b, judge={"name": "constant", "options": {"verdict": "failed"}}),
                                   registry=sami_kit_registry, write_outputs=False)
    assert broken.exit_code == 4 and broken.decision == "error"
    missing = sami_toolkit.run_gate(_config(c, str(tmp_path / "nope.jsonl")), registry=sami_kit_registry)
    assert missing.exit_code == 2


def test_run_gate_writes_the_outputs_and_passes(sami_kit_fakes, sami_kit_registry, tmp_path):
    c, b = _files(tmp_path, ["x"] * 40, ["y"] * 40)
    cfg = _config(c, b, judge={"name": "constant", "options": {"verdict": "tie"}}, ties="loss",
                  output={"dir": str(tmp_path / "out")})
    out = sami_toolkit.run_gate(cfg, registry=sami_kit_registry)
    assert out.exit_code == 1 and (tmp_path / "out" / "summary.json") in out.written  # every tie a loss: regression


def test_run_compare_takes_a_mapping(sami_kit_fakes, sami_kit_registry, tmp_path):
    c, b = _files(tmp_path, ["x"] * 30, ["y"] * 30)
    result = sami_toolkit.run_compare(_config(c, b, sequential={"enabled": True}), registry=sami_kit_registry)
    assert result.exit_code == result.gate.exit_code and "sequential" in result.meta
    with pytest.raises(sami_toolkit.ConfigError) as exc:
        sami_toolkit.run_compare(_config(c, b, metric="nope"), registry=sami_kit_registry)
    assert exc.value.exit_code == 2


def test_statistics_functions_on_the_facade():
    design = sami_toolkit.SequentialDesign.plan(100, min_items=20)
    row = sami_toolkit.simulate_sequential(design, 0.7, reps=200, seed=0)
    assert row.seq_pass > 0.9
    assert sami_toolkit.holm_adjust([0.01, 0.02]) == pytest.approx([0.02, 0.02])
    assert sami_toolkit.cohen_kappa(["A", "B"], ["A", "B"]) == 1.0
    ranked = sami_toolkit.rank_against_baseline({"a": [1.0] * 8 + [0.0] * 2, "b": [0.0] * 8 + [1.0] * 2},
                                                bootstrap=50)
    assert ranked[0].name == "a"
    for name in ("run_gate", "run_compare", "GateOutcome", "evaluate_look", "style_features", "judge_agreement",
                 "load_history", "compute_stats", "gate"):
        assert name in sami_toolkit.__all__ and callable(getattr(sami_toolkit, name))
