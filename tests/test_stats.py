"""Win-rate statistics: the paper's published numbers from the authors' per-item files, tie policies, failures,
length corrections, the LC bootstrap, judge health, the gate and the ``eval stats`` command."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from sami_toolkit.cli import cli
from sami_toolkit.evaluation.stats import (
    compute_stats,
    fit_logistic,
    gate,
    items_from_records,
    judge_health,
    load_items,
    model_family,
    proportion_summary,
    shared_family,
)

# the paper's per-item judge outcomes (numbers only, MIT, see tests/data/paper-results/README.md), copied into the
# repository so that the reproduction tests run on every clean clone
PAPER = Path(__file__).parent / "data" / "paper-results"
JUDGMENTS = PAPER / "judgments"
needs_paper = pytest.mark.skipif(not JUDGMENTS.is_dir(), reason=f"paper per-item judgments not found at {JUDGMENTS}")

# Figure 2b balanced win rates (%, ties = 0.5) recomputed from the files (spec §9.1, paper-results README)
BALANCED = {
    "hh_helpful_t1_vs_base": 63.8, "hh_helpful_t2_vs_base": 75.3, "hh_helpful_t3_vs_base": 66.9,
    "hh_harmless_t1_vs_base": 62.0, "hh_harmless_t2_vs_base": 68.2, "hh_harmless_t3_vs_base": 77.8,
    "hh_helpful_t0_vs_instruct": 34.0, "hh_helpful_t1_vs_instruct": 44.5, "hh_helpful_t2_vs_instruct": 57.6,
    "hh_helpful_t3_vs_instruct": 55.0, "hh_harmless_t0_vs_instruct": 24.3, "hh_harmless_t1_vs_instruct": 34.7,
    "hh_harmless_t2_vs_instruct": 51.4, "hh_harmless_t3_vs_instruct": 57.9,
}
# Tables 2-3 as published (spec §9.1): WR %, 95% CI, t
TABLES = {
    "hh_helpful_t1_vs_base": (54.15, 47.98, 60.33, 1.32), "hh_helpful_t2_vs_base": (70.35, 64.69, 76.01, 7.05),
    "hh_helpful_t3_vs_base": (67.51, 61.70, 73.32, 5.91), "hh_harmless_t1_vs_base": (46.74, 40.56, 52.93, -1.03),
    "hh_harmless_t2_vs_base": (61.05, 55.01, 67.10, 3.58), "hh_harmless_t3_vs_base": (74.75, 69.36, 80.13, 9.01),
    "hh_helpful_t0_vs_instruct": (23.1, 17.9, 28.3, -10.10), "hh_helpful_t1_vs_instruct": (40.3, 34.2, 46.3, -3.14),
    "hh_helpful_t2_vs_instruct": (46.9, 40.7, 53.1, -0.97), "hh_helpful_t3_vs_instruct": (54.1, 47.9, 60.3, 1.30),
    "hh_harmless_t0_vs_instruct": (22.8, 17.6, 28.0, -10.27), "hh_harmless_t1_vs_instruct": (32.0, 26.3, 37.8, -6.08),
    "hh_harmless_t2_vs_instruct": (49.4, 43.2, 55.6, -0.18), "hh_harmless_t3_vs_instruct": (57.8, 51.7, 63.9, 2.50),
}
# Figure 7 raw rates (ties = 0.5)
RAW = {"hh_helpful_t3_vs_base": 80.6, "hh_harmless_t3_vs_base": 90.4, "hh_helpful_t0_vs_instruct": 20.8,
       "hh_harmless_t2_vs_instruct": 53.4}


@pytest.fixture(scope="module")
def paper_stats() -> dict[str, object]:
    if not JUDGMENTS.is_dir():
        pytest.skip(f"paper per-item judgments not found at {JUDGMENTS}")
    return {name: compute_stats(load_items(JUDGMENTS / f"{name}.jsonl"), bootstrap=0) for name in BALANCED}


@needs_paper
def test_figure_2b_balanced_rates_at_t3(paper_stats):
    # the paper's text: 66 / 77 vs base, 54 / 57 vs instruct (truncated integers of 66.9 / 77.8 / 55.0 / 57.9)
    for name, expected in (("hh_helpful_t3_vs_base", 66.9), ("hh_harmless_t3_vs_base", 77.8),
                           ("hh_helpful_t3_vs_instruct", 55.0), ("hh_harmless_t3_vs_instruct", 57.9)):
        assert 100 * paper_stats[name].balanced_win_rate == pytest.approx(expected, abs=0.1), name


@needs_paper
def test_every_balanced_rate_matches_figure_2b(paper_stats):
    for name, expected in BALANCED.items():
        assert 100 * paper_stats[name].balanced_win_rate == pytest.approx(expected, abs=0.1), name


@needs_paper
def test_tables_2_3_logistic_reconstruction(paper_stats):
    diffs = []
    for name, (wr, lo, hi, t) in TABLES.items():
        s = paper_stats[name]
        got = 100 * s.logistic_win_rate
        diffs.append(abs(got - wr))
        assert got == pytest.approx(wr, abs=2.5), name
        # the paper's CI and t apply spec §8.5 to the fitted rate (logistic_paper_*), so they track the table as
        # closely as the rate does
        assert 100 * s.logistic_paper_ci_low == pytest.approx(lo, abs=2.6), name
        assert 100 * s.logistic_paper_ci_high == pytest.approx(hi, abs=2.6), name
        assert s.logistic_paper_t == pytest.approx(t, abs=0.8), name
        # the fit's own (delta-method) interval also carries the fit's uncertainty: never narrower than the paper's
        assert s.logistic_ci_low <= s.logistic_paper_ci_low + 1e-9 and s.logistic_ci_high >= s.logistic_paper_ci_high
        assert s.logistic_sem >= s.logistic_paper_sem
    assert sum(d <= 0.5 for d in diffs) >= 11, diffs  # "most within 0.5 pp"
    assert sum(diffs) / len(diffs) < 0.6


@needs_paper
def test_raw_rates_and_counts(paper_stats):
    for name, expected in RAW.items():
        assert 100 * paper_stats[name].win_rate == pytest.approx(expected, abs=0.05), name
    s = paper_stats["hh_helpful_t3_vs_base"]
    assert (s.wins, s.ties, s.losses, s.failures, s.n) == (201, 1, 48, 0, 250)
    assert s.mean_len_test == pytest.approx(225.9, abs=0.05)
    assert s.mean_len_baseline == pytest.approx(123.7, abs=0.05)


def test_spec_8_5_worked_example():
    r = proportion_summary(0.5415, 250)
    assert r["sem"] == pytest.approx(0.0315, abs=5e-5)
    assert 100 * r["ci_low"] == pytest.approx(47.98, abs=0.01)
    assert 100 * r["ci_high"] == pytest.approx(60.33, abs=0.01)
    assert r["t"] == pytest.approx(1.32, abs=0.005)
    r = proportion_summary(0.288, 250)
    assert 100 * r["ci_low"] == pytest.approx(23.19, abs=0.01) and r["t"] == pytest.approx(-7.40, abs=0.01)
    assert r["p_value"] < 0.001


def _items(outcomes, lt=None, lb=None):
    recs = []
    for i, o in enumerate(outcomes):
        rec = {"outcome": o}
        if lt is not None:
            rec["len_test"], rec["len_baseline"] = lt[i], lb[i]
        recs.append(rec)
    return items_from_records(recs)


def test_tie_policies_and_failures():
    items = _items([1, 1, 0, 0.5, None, None])
    half, loss, drop = (compute_stats(items, ties=t, bootstrap=0) for t in ("half", "loss", "drop"))
    assert half.win_rate == pytest.approx(2.5 / 4) and half.n == 4
    assert loss.win_rate == pytest.approx(2 / 4) and loss.n == 4
    assert drop.win_rate == pytest.approx(2 / 3) and drop.n == 3
    for s in (half, loss, drop):
        assert s.failures == 2 and s.n_total == 6 and s.failure_rate == pytest.approx(2 / 6)
        assert s.ties == 1  # failures are never ties
    assert any("failed" in n for n in half.notes)


def test_failed_flag_overrides_outcome_and_bad_values_are_config_errors():
    from sami_toolkit.core.errors import ConfigError

    items = items_from_records([{"outcome": 1, "failed": True}, {"outcome": 0}])
    assert items.outcome == [None, 0.0]
    with pytest.raises(ConfigError, match="line 1: 'outcome' must be"):
        items_from_records([{"outcome": 2}])
    with pytest.raises(ConfigError, match="missing 'outcome'"):
        items_from_records([{"len_test": 3}])
    with pytest.raises(ConfigError, match="len_test"):
        items_from_records([{"outcome": 1, "len_test": -1, "len_baseline": 2}])


def test_balanced_empty_stratum_is_null_with_note():
    s = compute_stats(_items([1, 0, 1], [10, 20, 30], [5, 5, 5]), bootstrap=0)
    assert s.balanced_win_rate is None and s.n_test_shorter_or_equal == 0
    assert any("stratum is empty" in n for n in s.notes)


def test_balanced_is_unweighted_mean_of_strata():
    # test longer: outcomes 1,1,1,0 (0.75); shorter-or-equal (incl. equal length): 0, 0.5 (0.25)
    s = compute_stats(_items([1, 1, 1, 0, 0, 0.5], [9, 9, 9, 9, 1, 5], [1, 1, 1, 1, 9, 5]), bootstrap=0)
    assert s.balanced_win_rate == pytest.approx(0.5 * (0.75 + 0.25))
    assert (s.n_test_longer, s.n_test_shorter_or_equal) == (4, 2)


def test_logistic_fit_solves_the_score_equations():
    import numpy as np

    rng = np.random.default_rng(4)
    x = rng.normal(size=500)
    y = (rng.random(500) < 1 / (1 + np.exp(-(-0.3 + 0.8 * x)))).astype(float)
    counts = rng.integers(1, 4, size=500)
    beta, ok = fit_logistic(x, y, counts)
    mu = 1 / (1 + np.exp(-(beta[0, 0] + beta[0, 1] * x)))
    assert ok[0]
    # at the (weighted) MLE the gradient vanishes: Σ c(y − μ) = 0 and Σ c(y − μ)x = 0
    assert abs(np.sum(counts * (y - mu))) < 1e-6 and abs(np.sum(counts * (y - mu) * x)) < 1e-6
    assert -1.0 < beta[0, 0] < 0.4 and 0.4 < beta[0, 1] < 1.3


@pytest.mark.slow
def test_logistic_fit_matches_statsmodels():
    import numpy as np
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    x = rng.normal(size=300)
    y = (rng.random(300) < 1 / (1 + np.exp(-(0.4 + 1.3 * x)))).astype(float)
    beta, ok = fit_logistic(x, y, np.ones(300))
    ref = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit()
    assert ok[0]
    np.testing.assert_allclose(beta[0], ref.params, rtol=1e-6, atol=1e-8)


def test_logistic_undefined_when_one_sided_but_lc_and_gate_still_work():
    n = 40
    s = compute_stats(_items([1] * n, list(range(n)), [20] * n), bootstrap=200, seed=1)
    assert s.logistic_win_rate is None and any("diverges" in note for note in s.notes)
    assert 0.9 < s.lc_win_rate < 1.0  # the weak prior keeps the GLM finite
    assert s.win_rate == 1.0 and s.ci_high == 1.0 and s.ci_low < 1.0  # Wilson, not a point interval
    assert gate(s, metric="win_rate").decision == "pass"


def test_lc_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = random.Random(0)
    outcomes, lt, lb = [], [], []
    for _ in range(400):
        a, b = rng.randint(10, 300), rng.randint(10, 300)
        outcomes.append(1 if rng.random() < (0.75 if a > b else 0.4) else (0.5 if rng.random() < 0.1 else 0))
        lt.append(a)
        lb.append(b)
    items = _items(outcomes, lt, lb)
    s1 = compute_stats(items, bootstrap=500, seed=7)
    s2 = compute_stats(items, bootstrap=500, seed=7)
    s3 = compute_stats(items, bootstrap=500, seed=8)
    assert (s1.lc_ci_low, s1.lc_ci_high) == (s2.lc_ci_low, s2.lc_ci_high)
    assert (s1.lc_ci_low, s1.lc_ci_high) != (s3.lc_ci_low, s3.lc_ci_high)
    assert s1.lc_ci_low < s1.lc_win_rate < s1.lc_ci_high
    assert s1.length_coefficient > 0  # the simulated judge prefers longer responses
    # length control pulls the rate below the raw one, since the candidate wins mostly by being longer
    assert s1.lc_win_rate < s1.balanced_win_rate + 0.05
    # bootstrap SD of the raw rate is close to the analytic SEM
    assert s1.bootstrap_ci_high - s1.bootstrap_ci_low == pytest.approx(2 * 1.96 * s1.sem, rel=0.25)


def test_gate_decisions():
    def stats_for(wins, losses):
        return compute_stats(_items([1] * wins + [0] * losses), bootstrap=0)

    assert gate(stats_for(80, 20), margin=0.0).exit_code == 0
    assert gate(stats_for(20, 80), margin=0.05).exit_code == 1
    inconclusive = gate(stats_for(52, 48), margin=0.0)
    assert inconclusive.decision == "inconclusive" and inconclusive.exit_code == 3
    # a margin turns a slightly-worse candidate into a pass (non-inferiority)
    s = stats_for(450, 550)
    assert gate(s, margin=0.0).decision == "fail"
    assert gate(s, margin=0.1).decision == "pass"
    # no lengths: the LC metric has no CI -> inconclusive, never a silent pass
    assert gate(stats_for(90, 10), metric="lc_win_rate").exit_code == 3


def test_judge_health():
    items = items_from_records(
        [{"outcome": 1, "candidate_position": "A"}] * 30 + [{"outcome": 0, "candidate_position": "A"}] * 10
        + [{"outcome": 1, "candidate_position": "B"}] * 5 + [{"outcome": 0, "candidate_position": "B"}] * 25
        + [{"outcome": None, "candidate_position": "B"}] * 10)
    h = judge_health(items, judge_model="gpt-4o", candidate_model="llama-3-8b")
    # slot A won 30 (candidate in A wins) + 25 (baseline in A wins) of 70 decisive verdicts
    assert h["first_position_rate"] == pytest.approx(55 / 70)
    assert h["failure_rate"] == pytest.approx(10 / 80)
    assert any("position bias" in w for w in h["warnings"]) and any("failed" in w for w in h["warnings"])
    both = items_from_records([{"outcome": 1, "candidate_position": "A", "verdicts": ["A", "B"]},
                               {"outcome": 0.5, "candidate_position": "A", "verdicts": ["A", "A"]}])
    h2 = judge_health(both, judge_model="gpt-4o-mini", candidate_model="openai/gpt-4o")
    assert h2["position_consistency"] == pytest.approx(0.5)
    assert any("'gpt' model family" in w for w in h2["warnings"])


def test_model_families():
    assert model_family("mistralai/Mixtral-8x7B-Instruct") == "mistral"
    assert shared_family("claude-3-opus", "anthropic/claude-3-haiku") == "claude"
    assert shared_family("gpt-4o", "meta-llama/Llama-3-8B") is None
    assert model_family("/tmp/checkpoints/iter-1") is None


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_stats_json(tmp_path):
    rows = [{"outcome": o, "len_test": 10 + i, "len_baseline": 12} for i, o in enumerate([1, 0, 1, 0.5, 1, 0] * 10)]
    rows.append({"outcome": None, "error": "timeout", "len_test": 1, "len_baseline": 1})
    f = _write(tmp_path / "j.jsonl", rows)
    res = CliRunner().invoke(cli, ["eval", "stats", str(f), "--json", "--bootstrap", "100", "--ties", "loss"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    for key in ("n", "failures", "win_rate", "sem", "ci_low", "ci_high", "t", "p_value", "balanced_win_rate",
                "logistic_win_rate", "lc_win_rate", "lc_ci_low", "lc_ci_high"):
        assert key in data, key
    assert data["n"] == 60 and data["failures"] == 1
    assert data["win_rate"] == pytest.approx(30 / 60)
    assert 0 <= data["lc_ci_low"] <= data["lc_ci_high"] <= 1


def test_cli_stats_human_and_errors(tmp_path):
    f = _write(tmp_path / "j.jsonl", [{"outcome": 1}, {"outcome": 0}, {"outcome": 1}])
    res = CliRunner().invoke(cli, ["eval", "stats", str(f), "--bootstrap", "0"])
    assert res.exit_code == 0
    assert "no token lengths" in res.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"outcome": 1}\n{"outcome": "yes"}\n')
    from sami_toolkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["eval", "stats", str(bad)])
    assert exc.value.code == 2
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"outcome": 1}\nnot json\n')
    with pytest.raises(SystemExit) as exc:
        main(["eval", "stats", str(broken)])
    assert exc.value.code == 2
