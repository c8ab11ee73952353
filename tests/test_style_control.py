"""Style control (``sc_win_rate``, issue 18 §2): Arena-Hard-Auto's covariates, a seeded simulation of a judge that
rewards formatting, the honest fallbacks, the gate on ``sc_win_rate`` end to end, and the paper-data numbers the
docs quote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sami_toolkit.evaluation.stats import Items, compute_stats, gate, load_items
from sami_toolkit.evaluation.stats.style import markdown_counts, style_features

PAPER = Path("/work/shared/paper-results/judgments")


def test_markdown_counts():
    text = "# Title\n\nSome **bold** and __also bold__ text.\n\n- one\n* two\n1. three\n2) four\n#not a header"
    assert markdown_counts(text) == {"headers": 1, "lists": 4, "bold": 2}
    assert markdown_counts("") == {"headers": 0, "lists": 0, "bold": 0}


def _items(outcomes, lt, lb, tt=None, tb=None) -> Items:
    items = Items(list(outcomes), list(lt), list(lb))
    items.text_test = list(tt) if tt is not None else []
    items.text_baseline = list(tb) if tb is not None else []
    return items


def test_a_judge_that_rewards_bold_is_corrected_to_chance():
    """The candidate is no better, but bolds half its answers and the judge prefers bold: the raw rate is far
    above 50%, the style-controlled rate's CI covers 50%, and the LC rate (length only) does not correct it."""
    rng = np.random.default_rng(0)
    n = 400
    bold = rng.random(n) < 0.5
    lt = rng.integers(80, 120, n)
    lb = rng.integers(80, 120, n)
    p_win = np.where(bold, 0.8, 0.5)
    outcome = (rng.random(n) < p_win).astype(float)
    tt = [("**Answer:** " if b else "Answer: ") + "text " * 10 for b in bold]
    tb = ["Answer: " + "text " * 10 for _ in range(n)]
    s = compute_stats(_items(outcome, lt, lb, tt, tb), bootstrap=300, seed=1)
    assert s.win_rate > 0.6 and s.ci_low > 0.55
    assert s.lc_ci_low > 0.55  # length control alone does not see the formatting
    assert s.sc_ci_low < 0.5 < s.sc_ci_high
    assert s.sc_coefficients["bold"] > 0.3 and s.sc_ci_method == "bootstrap percentile"


def test_sc_covers_the_truth_in_repeated_simulation():
    """Coverage of the bootstrap CI of sc_win_rate at a true equal-style rate of 60% (seeded, 40 runs)."""
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        n = 200
        lists = rng.random(n) < 0.4
        lt, lb = rng.integers(50, 150, n), rng.integers(50, 150, n)
        theta = np.log(0.6 / 0.4)
        x_len = (lt - lb) / (lt + lb)
        p = 1 / (1 + np.exp(-(theta + 1.0 * lists + 2.0 * x_len)))
        outcome = (rng.random(n) < p).astype(float)
        tt = [("- a point\n- another\n" if li else "a point, another\n") + "w " * 5 for li in lists]
        tb = ["a point, another\n" + "w " * 5] * n
        s = compute_stats(_items(outcome, lt, lb, tt, tb), bootstrap=200, seed=seed)
        covered += s.sc_ci_low <= 0.6 <= s.sc_ci_high
    assert covered >= 34  # nominal 95% of 40 = 38; binomial slack


def test_large_n_wald_interval_agrees_with_the_bootstrap(monkeypatch):
    import sami_toolkit.evaluation.stats.style as style

    rng = np.random.default_rng(3)
    n = 3000
    lt, lb = rng.integers(20, 400, n), rng.integers(20, 400, n)
    outcome = (rng.random(n) < 0.55 + 0.1 * (lt > lb)).astype(float)
    boot = compute_stats(_items(outcome, lt, lb), bootstrap=400, seed=0)
    monkeypatch.setattr(style, "MAX_STYLE_WORK", 1000)
    wald = compute_stats(_items(outcome, lt, lb), bootstrap=400, seed=0)
    assert wald.sc_ci_method.startswith("wald") and boot.sc_ci_method == "bootstrap percentile"
    assert abs(wald.sc_ci_low - boot.sc_ci_low) < 0.006 and abs(wald.sc_ci_high - boot.sc_ci_high) < 0.006


def test_degenerate_style_data_never_pass():
    n = 40
    all_wins = compute_stats(_items([1.0] * n, [10] * n, [12] * n), bootstrap=100)
    assert all_wins.sc_ci_method.startswith("wilson")
    # style alone predicts every verdict: separable, so no CI and the gate is inconclusive with the reason
    tt = ["**x**" if i % 2 else "x" for i in range(n)]
    outcome = [1.0 if i % 2 else 0.0 for i in range(n)]
    s = compute_stats(_items(outcome, [10] * n, [10] * n, tt, ["x"] * n), bootstrap=100)
    assert s.sc_ci_low is None
    g = gate(s, metric="sc_win_rate")
    assert g.decision == "inconclusive" and "style" in g.reason


def test_without_texts_style_control_uses_length_only():
    x, names, notes = style_features([10, 20, 30], [20, 10, 30])
    assert names == ["length"] and any("length only" in n for n in notes)


@pytest.mark.skipif(not PAPER.is_dir(), reason="paper data not available")
def test_paper_numbers_quoted_in_the_docs():
    s = compute_stats(load_items(PAPER / "hh_helpful_t1_vs_instruct.jsonl"), bootstrap=1000, seed=1)
    assert round(100 * s.lc_win_rate, 1) == 41.1 and round(100 * s.sc_win_rate, 1) == 44.4
    doc = Path(__file__).resolve().parent.parent / "docs" / "evaluation.md"
    assert "| hh_helpful_t1_vs_instruct | 27.8 | 41.1 [32.8, 50.5] | 44.4 [36.3, 53.3] |" in doc.read_text()


@pytest.mark.skipif(not PAPER.is_dir(), reason="paper data not available")
def test_lc_and_sc_gate_verdicts_on_the_paper_data_as_documented():
    differ = []
    for path in sorted(PAPER.glob("hh_*.jsonl")):
        s = compute_stats(load_items(path), bootstrap=1000, seed=1)
        lc, sc = gate(s, metric="lc_win_rate", min_items=1), gate(s, metric="sc_win_rate", min_items=1)
        if lc.decision != sc.decision:
            differ.append((path.stem, lc.decision, sc.decision))
    assert differ == [("hh_harmless_t1_vs_instruct", "fail", "inconclusive")]


def test_gate_on_sc_win_rate_end_to_end(sami_kit_fakes, sami_kit_registry, tmp_path, capsys):
    from sami_toolkit.cli import main

    n = 60
    cand = tmp_path / "c.jsonl"
    base = tmp_path / "b.jsonl"
    cand.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q{i}?", "response": f"answer {i} " * (1 + i % 3)})
                            + "\n" for i in range(n)))
    base.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q{i}?", "response": f"reply {i}"}) + "\n"
                            for i in range(n)))
    with pytest.raises(SystemExit) as exc:
        main(["eval", "compare", "--candidate", str(cand), "--baseline", str(base), "--constitution", "1. Be kind.",
              "--judge", "constant", "--metric", "sc_win_rate", "--bootstrap", "100", "--json"],
             registry=sami_kit_registry)
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert summary["gate"]["metric"] == "sc_win_rate" and summary["sc_win_rate"] is not None
    assert int(exc.value.code) in (0, 1, 3) and "SC win rate" in out.err
