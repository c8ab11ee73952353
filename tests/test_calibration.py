"""The judge-validity preflight (``--calibrate``, issue 18 §3) and the label-free probe: κ and agreement by hand and
by seeded simulation, the shipped calibration set, exit 4 below the floors (end to end, also through the litellm
judge against the local OpenAI-compatible server), the position-flip rate and the length correlation in judge
health."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
from pydantic import Field

from sami_toolkit.cli import main
from sami_toolkit.core.components import ComponentOptions, Judge
from sami_toolkit.core.records import JudgeItem, Judgment
from sami_toolkit.evaluation.calibration import BUILTIN, load_calibration
from sami_toolkit.evaluation.stats.agreement import agreement, cohen_kappa
from sami_toolkit.evaluation.stats.probe import flip_rate, length_correlation

GOOD = {row["response_a"] if row["label"] == "A" else row["response_b"] for row in load_calibration("builtin")}


class OracleJudge(Judge):
    """Knows the calibration set's better answers; otherwise prefers a response containing GOOD. ``bias`` makes it
    answer "A" on that share of the calibration items (seeded)."""

    name = "oracle"

    class Options(ComponentOptions):
        model: str = Field("oracle-judge", description="Model name.")
        bias: float = Field(0.0, description="Share of calibration items answered 'A' whatever they say.")

    calls = 0

    def judge(self, items: Sequence[JudgeItem], *, progress: Any = None) -> list[Judgment]:
        rng = np.random.default_rng(0)
        out = []
        for item in items:
            OracleJudge.calls += 1
            if item.response_a in GOOD or item.response_b in GOOD:
                verdict = "A" if item.response_a in GOOD else "B"
                if rng.random() < self.options.bias:
                    verdict = "A"
            else:
                a, b = "GOOD" in item.response_a, "GOOD" in item.response_b
                verdict = "A" if a and not b else "B" if b and not a else "tie"
            out.append(Judgment(id=item.id, verdict=verdict, raw=f"Final Response: {verdict}"))
        return out


@pytest.fixture
def registry(sami_kit_fakes, sami_kit_register_component, sami_kit_registry):
    sami_kit_register_component(OracleJudge)
    return sami_kit_registry


def _run(args: list[str], capsys: Any, registry: Any = None) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args, registry=registry)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def _files(tmp_path: Path, n: int = 40) -> list[str]:
    c, b = tmp_path / "c.jsonl", tmp_path / "b.jsonl"
    c.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q{i}?", "response": f"GOOD {i}" + " more" * (i % 4)})
                         + "\n" for i in range(n)))
    b.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q{i}?", "response": f"weak {i}"}) + "\n"
                         for i in range(n)))
    return ["eval", "compare", "--candidate", str(c), "--baseline", str(b), "--constitution", "1. Be helpful.",
            "--bootstrap", "100"]


# ------------------------------------------------------------------------------------------- statistics
def test_cohen_kappa_by_hand():
    # 2x2 table [[20, 5], [10, 15]]: p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5 -> kappa 0.4
    r1 = ["A"] * 25 + ["B"] * 25
    r2 = ["A"] * 20 + ["B"] * 5 + ["A"] * 10 + ["B"] * 15
    assert cohen_kappa(r1, r2) == pytest.approx(0.4)
    assert cohen_kappa(["A", "B"], ["A", "B"]) == 1.0
    assert cohen_kappa(["A", "A"], ["A", "A"]) is None


def test_a_position_biased_judge_has_chance_kappa_and_no_consistency():
    """Seeded simulation: a judge that always answers slot A, on labels balanced between A and B."""
    rng = np.random.default_rng(1)
    labels = list(rng.choice(["A", "B"], 200))
    # order 1 shows the pair as given, order 2 swapped: "slot A" names response_a, then response_b
    agree = agreement(labels, ["A"] * 200, ["B"] * 200)
    assert agree.position_consistency == 0.0 and abs(agree.kappa) < 0.1 and abs(agree.accuracy - 0.5) < 0.01
    perfect = agreement(labels, labels, labels)
    assert perfect.accuracy == perfect.kappa == perfect.position_consistency == 1.0
    failed = agreement(["A", "B"], [None, "B"], ["A", "B"])
    assert failed.failures == 1 and failed.accuracy == 0.75 and failed.position_consistency == 0.5


def test_probe_statistics():
    assert flip_rate([1.0, 0.0, 1.0, None], [1.0, 1.0, 0.0, 1.0]) == (2 / 3, 3)
    rng = np.random.default_rng(2)
    lt, lb = rng.integers(20, 200, 300), rng.integers(20, 200, 300)
    outcome = [1.0 if t > b else 0.0 for t, b in zip(lt, lb)]  # the longer answer always wins
    out = length_correlation(outcome, lt, lb)
    assert out["length_correlation"] > 0.7 and out["length_correlation_p"] < 1e-6 and out["longer_wins_rate"] == 1.0
    null = length_correlation(list(rng.integers(0, 2, 300).astype(float)), lt, lb)
    assert abs(null["length_correlation"]) < 0.15


def test_shipped_calibration_set():
    rows = load_calibration("builtin")
    assert BUILTIN.is_file() and len(rows) == 24
    labels = [r["label"] for r in rows]
    assert 8 <= labels.count("A") <= 16  # the better answer's slot is balanced, so "always A" cannot pass


# ------------------------------------------------------------------------------------------- end to end
def test_a_valid_judge_passes_the_preflight_and_the_numbers_are_reported(registry, tmp_path, capsys):
    code, out, err = _run([*_files(tmp_path), "--judge", "oracle", "--calibrate", "builtin", "--json",
                           "--markdown", str(tmp_path / "s.md"), "--junit", str(tmp_path / "j.xml")], capsys, registry)
    assert code == 0, err
    cal = json.loads(out)["calibration"]
    assert cal["passed"] and cal["accuracy"] == 1.0 and cal["kappa"] == 1.0 and cal["position_consistency"] == 1.0
    assert "judge calibration (24 labelled pairs" in err and "passed" in (tmp_path / "s.md").read_text()
    props = {p.get("name"): p.get("value") for p in ET.parse(tmp_path / "j.xml").iter("property")}
    assert props["calibration.passed"] == "True"


def test_a_biased_judge_is_refused_with_exit_4_before_the_candidate_is_judged(registry, tmp_path, capsys):
    OracleJudge.calls = 0
    args = [*_files(tmp_path), "--judge", "oracle", "--judge-option", "bias=0.6", "--calibrate", "builtin",
            "--junit", str(tmp_path / "j.xml"), "--json"]
    code, out, err = _run(args, capsys, registry)
    assert code == 4, err
    assert "calibration preflight" in err and "position consistency" in err and "< 0.70" in err
    assert OracleJudge.calls == 48  # 24 pairs x 2 orders; the 40 candidate items were never judged
    assert ET.parse(tmp_path / "j.xml").getroot().find("testsuite/testcase/error") is not None
    # the floors are configurable
    code, _, err = _run([*args, "-o", "calibration.min_consistency=0.2", "-o", "calibration.min_accuracy=0.5",
                         "-o", "calibration.min_kappa=0.1"], capsys, registry)
    assert code == 0, err


def test_a_bad_calibration_file_is_a_config_error(registry, tmp_path, capsys):
    bad = tmp_path / "cal.jsonl"
    bad.write_text(json.dumps({"id": "x", "prompt": "p", "response_a": "a", "response_b": "b", "label": "C"}) + "\n")
    code, _, err = _run([*_files(tmp_path), "--judge", "oracle", "--calibrate", str(bad)], capsys, registry)
    assert code == 2 and "line 1" in err and "label" in err and "Traceback" not in err
    code, _, err = _run([*_files(tmp_path), "--judge", "oracle", "--calibrate", str(tmp_path / "none.jsonl")],
                        capsys, registry)
    assert code == 2 and "no such file" in err


def test_probe_reports_flips_and_length_correlation(registry, tmp_path, capsys):
    code, out, err = _run([*_files(tmp_path), "--judge", "constant", "--probe", "20", "--json"], capsys, registry)
    health = json.loads(out)["judge_health"]
    assert health["position_flip_rate"] == 1.0 and health["position_flip_n"] == 20  # "always A" flips every time
    assert "position flips" in err and "position-flip rate (probe)" in err
    assert "length_correlation" in health and "verdict vs length difference" in err
    code, out, err = _run([*_files(tmp_path), "--judge", "oracle", "--both-orders", "--json"], capsys, registry)
    health = json.loads(out)["judge_health"]
    assert health["position_flip_rate"] == 0.0 and health["position_flip_n"] == 40  # free with both orders


def test_litellm_judge_that_always_answers_a_fails_calibration(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sami_kit_litellm")
    from sami_toolkit.testing.server import OpenAIServer

    monkeypatch.setenv("SAMI_KIT_CAL_KEY", "sk-cal-test-123")
    with OpenAIServer(reply="Comparison: A is better.\nFinal Response: A") as server:
        code, _, err = _run([*_files(tmp_path), "--judge", "litellm", "--judge-option", "model=openai/gpt-4-0613",
                             "--judge-option", f"api_base={server.api_base}", "--judge-option",
                             "api_key_env=SAMI_KIT_CAL_KEY", "--judge-option", "cache_path=none",
                             "--calibrate", "builtin"], capsys)
        assert code == 4, err
        assert "position consistency 0.00 < 0.70" in err and len(server.requests) == 48
