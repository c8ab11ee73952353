"""The sequential gate (issue 18 §1): the design's error rates by seeded simulation, the judge calls it saves, and
``eval compare --sequential`` end to end against the local OpenAI-compatible server, including the cache reuse of
a stopped gate's verdicts by a later full run."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from sami_toolkit.cli import main
from sami_toolkit.evaluation.stats.sequential import (
    SequentialDesign,
    evaluate_look,
    simulate,
    spent,
    wrong_rates,
    z_boundaries,
)

KEY_ENV = "SAMI_KIT_SEQ_TEST_KEY"


def test_boundaries_spend_exactly_the_planned_error():
    """Crossing probabilities of a Gaussian random walk at the computed boundaries match the spending function
    (numerical integration checked by an independent seeded simulation)."""
    fractions = [k / 10 for k in range(1, 11)]
    bounds = z_boundaries(fractions, 0.025)
    rng = np.random.default_rng(0)
    steps = rng.standard_normal((200_000, 10))
    z = np.cumsum(steps, axis=1) / np.sqrt(np.arange(1, 11))
    crossed = (z > np.array(bounds)).any(axis=1).mean()
    assert abs(crossed - 0.025) < 0.002
    first = (z[:, 0] > bounds[0]).mean()
    assert abs(first - spent(0.1, 0.025)) < 0.0015
    assert all(b > 1.96 for b in bounds)  # the price of looking ten times


@pytest.mark.parametrize("n_max", [250, 1000])
@pytest.mark.parametrize("tie_rate", [0.0, 0.3])
def test_wrong_verdicts_stay_below_alpha_at_every_rate(n_max, tie_rate):
    design = SequentialDesign.plan(n_max, min_items=20)
    reps = 3000 if n_max == 250 else 800
    for rate in (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7):
        row = simulate(design, rate, tie_rate=tie_rate, reps=reps, seed=int(rate * 100) + n_max)
        wrong_pass, wrong_fail = wrong_rates(row)
        assert wrong_pass <= design.alpha and wrong_fail <= design.alpha, (rate, row)


@pytest.mark.parametrize("n_max,rate,tie_rate", [(250, 0.7, 0.0), (250, 0.3, 0.0), (250, 0.6, 0.0), (250, 0.4, 0.0),
                                                 (250, 0.6, 0.3), (250, 0.4, 0.3), (1000, 0.6, 0.0), (1000, 0.4, 0.0)])
def test_judge_calls_fall_by_forty_percent_ten_points_from_the_threshold(n_max, rate, tie_rate):
    row = simulate(SequentialDesign.plan(n_max, min_items=20), rate, tie_rate=tie_rate, reps=4000, seed=7)
    assert row.calls_saved >= 0.40, row


def test_futility_stops_only_as_inconclusive_and_never_adds_errors():
    for rate in (0.5, 0.6):
        with_f = simulate(SequentialDesign.plan(250, min_items=20), rate, reps=3000, seed=5)
        without = simulate(SequentialDesign.plan(250, min_items=20, futility=0.0), rate, reps=3000, seed=5)
        # same draws: futility can only turn an open run into "inconclusive", never into a verdict
        assert with_f.seq_pass <= without.seq_pass and with_f.seq_fail <= without.seq_fail
        assert with_f.calls_saved > without.calls_saved
        assert without.seq_pass - with_f.seq_pass < 0.05  # at most a few points of power


def test_margin_moves_the_threshold():
    design = SequentialDesign.plan(250, min_items=20)
    row = simulate(design, 0.45, margin=0.05, reps=2000, seed=3)  # at the threshold 0.45 itself
    assert max(wrong_rates(row, margin=0.05)) <= 0.05
    row = simulate(design, 0.55, margin=0.05, reps=4000, seed=4)  # 10 points above it
    assert row.seq_pass > 0.75 and row.calls_saved >= 0.40


def test_a_look_decides_only_on_evidence():
    design = SequentialDesign.plan(200, min_items=20)
    few = evaluate_look(design, 0, [1.0] * 10, failures=0, n_judged=10, threshold=0.5, min_items=20,
                        max_failure_rate=0.2)
    assert few.decision == "continue" and "min_items" in few.reason  # 10 straight wins are not enough
    all_wins = evaluate_look(design, 1, [1.0] * 20, failures=0, n_judged=20, threshold=0.5, min_items=20,
                             max_failure_rate=0.2)
    assert all_wins.decision == "pass" and all_wins.ci_high - all_wins.ci_low > 0.05  # never a zero-width CI
    broken = evaluate_look(design, 1, [1.0] * 5, failures=15, n_judged=20, threshold=0.5, min_items=20,
                           max_failure_rate=0.2)
    assert broken.decision == "error" and "15 of 20" in broken.reason
    last = evaluate_look(design, len(design.looks) - 1, [1.0, 0.0] * 100, failures=0, n_judged=200,
                         threshold=0.5, min_items=20, max_failure_rate=0.2)
    assert last.decision == "inconclusive"


def test_design_validation():
    from sami_toolkit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="round"):
        SequentialDesign.plan(100, round_fraction=0)
    with pytest.raises(ConfigError, match="spending"):
        SequentialDesign.plan(100, spending="linear")
    d = SequentialDesign.plan(95, round_fraction=0.1, min_items=20)
    assert d.looks[0] == 20 and d.looks[-1] == 95 and d.looks == sorted(set(d.looks))
    assert SequentialDesign.plan(250, min_items=20).looks[:2] == [26, 39]  # rounds of 5%: 13 items each


# ------------------------------------------------------------------------------------------- end to end
def _prefer_good(request: dict[str, Any]) -> str:
    from sami_toolkit.testing.server import last_user_message

    text = last_user_message(request)
    m = re.search(r"Response A: (.*?)\n\nResponse B: (.*?)\n\n", text, re.S)
    verdict = "A" if m and "GOOD" in m.group(1) else "B"
    return f"Comparison: fine.\nFinal Response: {verdict}"


@pytest.fixture
def server() -> Iterator[Any]:
    pytest.importorskip("sami_kit_litellm")
    from sami_toolkit.testing.server import OpenAIServer

    with OpenAIServer(reply=_prefer_good) as srv:
        yield srv


def _responses(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Question {i}?", "response": t}) + "\n"
                            for i, t in enumerate(texts)))
    return path


def _run(args: list[str], capsys: Any) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.mark.slow  # two runs of 200 items over HTTP (~10 s)
def test_sequential_compare_stops_early_and_a_full_run_reuses_every_verdict(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-seq-test-000")
    n = 200
    # the candidate wins 80% of the items: decided long before the 200th
    cand = _responses(tmp_path / "c.jsonl", [("GOOD answer" if i % 5 else "weak answer") + f" {i}" for i in range(n)])
    base = _responses(tmp_path / "b.jsonl", [f"weak reply {i}" if i % 5 else f"GOOD reply {i}" for i in range(n)])
    judge = ["--judge", "litellm", "--judge-option", "model=openai/gpt-4-0613", "--judge-option",
             f"api_base={server.api_base}", "--judge-option", f"api_key_env={KEY_ENV}", "--judge-option",
             f"cache_path={tmp_path / 'cache.sqlite'}"]
    common = ["eval", "compare", "--candidate", str(cand), "--baseline", str(base), "--constitution",
              "1. Be helpful.", *judge, "--bootstrap", "100"]
    code, out, err = _run([*common, "--sequential", "--json", "--junit", str(tmp_path / "j.xml"),
                           "--markdown", str(tmp_path / "s.md"), "--out-dir", str(tmp_path / "seq")], capsys)
    assert code == 0, err
    summary = json.loads(out)
    seq = summary["sequential"]
    assert seq["decision"] == "pass" and seq["stopped_round"] < seq["rounds"]
    assert seq["judge_calls"] == len(server.requests) < n and seq["judge_calls_saved"] == n - seq["judge_calls"]
    assert [look["n_judged"] for look in seq["looks"]] == seq["design"]["looks"][:len(seq["looks"])]
    assert summary["gate"]["decision"] == "pass" and "sequential round" in summary["gate"]["reason"]
    assert "judge calls made" in err and "saved" in err
    md = (tmp_path / "s.md").read_text()
    assert "| round | judged |" in md and f"{seq['judge_calls_saved']} saved" in md
    props = {p.get("name"): p.get("value") for p in ET.parse(tmp_path / "j.xml").iter("property")}
    assert props["sequential.judge_calls_saved"] == str(seq["judge_calls_saved"])
    assert "sequential.round1" in props
    judged = len(server.requests)
    rows = [json.loads(line) for line in (tmp_path / "seq" / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == judged  # only judged items are recorded
    # the full run pays only for the items the stopped gate did not judge
    code, out, err = _run([*common, "--json"], capsys)
    assert code == 0, err
    full = json.loads(out)
    assert len(server.requests) - judged == n - judged
    assert full["cached"] == judged and "sequential" not in full


def test_sequential_needs_the_win_rate_metric(tmp_path, capsys):
    cand = _responses(tmp_path / "c.jsonl", ["GOOD"] * 30)
    code, _, err = _run(["eval", "compare", "--candidate", str(cand), "--baseline", str(cand), "--constitution",
                         "1. Be helpful.", "--judge", "constant", "--sequential", "--metric", "lc_win_rate"], capsys)
    assert code == 2 and "sequential" in err and "Traceback" not in err
