"""Issue 14 §1, "the gate decides only on evidence": each test would have caught one observed defect.

* 1–3 items all won by the candidate passed `--metric lc_win_rate --margin 0` with a CI like [0.966, 0.966];
* the same file as candidate and baseline passed `--margin 0` (CI [50.0, 50.0], "0.500 >= 0.500");
* the logistic rate at n = 9 with 6 wins printed "100.0% ±0.3 [99.4, 100.0]" (a binomial SE on a fitted value);
* no minimum n; `eval stats` used seed 0 where compare used seed 1 (different bootstrap CIs);
* an unreachable judge gave 100 failed judgments and exit 3; judge-health warnings, cost and cache hits were not
  on the console; `--bootstrap 1e9` took 55 s and 22.8 GB; a key echoed by the judge server reached the outputs.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import pytest
from pydantic import Field

from sami_toolkit.cli import main
from sami_toolkit.core.components import ComponentOptions, Judge
from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.records import JudgeItem, Judgment
from sami_toolkit.evaluation.stats import (
    DEFAULT_MIN_ITEMS,
    MAX_BOOTSTRAP,
    WinRateStats,
    compute_stats,
    gate,
    items_from_records,
    wilson_interval,
)

SECRET = "sk-live-W1-0123456789abcdefSECRET"


class EvidenceJudge(Judge):
    """Prefers the response containing ``prefer`` (a tie when both or neither do); fails the items whose candidate
    contains ``fail_marker``; ``echo_key`` puts $OPENAI_API_KEY into every raw answer and error, the way a server
    that echoes the Authorization header would."""

    name = "evidence"

    class Options(ComponentOptions):
        prefer: str = Field("GOOD", description="Substring that makes a response win.")
        model: str = Field("evidence-judge", description="Reported model name.")
        fail_marker: str | None = Field(None, description="Items whose responses contain it fail.")
        echo_key: bool = Field(False, description="Echo $OPENAI_API_KEY in raw texts and errors.")
        cost: float = Field(0.0, description="Cost per judgment.")

    def judge(self, items: Sequence[JudgeItem], *, progress: Any = None) -> list[Judgment]:
        key = os.environ.get("OPENAI_API_KEY", "") if self.options.echo_key else ""
        echo = f" (request had Authorization: Bearer {key})" if key else ""
        out = []
        for item in items:
            marker = self.options.fail_marker
            if marker and (marker in item.response_a or marker in item.response_b):
                out.append(Judgment(id=item.id, verdict="failed", raw="", error=f"HTTP 500: server exploded{echo}"))
                continue
            a, b = self.options.prefer in item.response_a, self.options.prefer in item.response_b
            verdict = "A" if a and not b else "B" if b and not a else "tie"
            out.append(Judgment(id=item.id, verdict=verdict, raw=f"Comparison: x{echo}\nFinal Response: {verdict}",
                                cost=self.options.cost))
        return out


@pytest.fixture
def registry(sami_kit_fakes, sami_kit_register_component, sami_kit_registry):
    sami_kit_register_component(EvidenceJudge)
    return sami_kit_registry


def _responses(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Question {i}?", "response": t}) + "\n"
                            for i, t in enumerate(texts)))
    return path


def _run(args: list[str], capsys: Any, registry: Any) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args, registry=registry)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


BASE = ["eval", "compare", "--constitution", "1. Be helpful.\n2. Be harmless.", "--bootstrap", "200"]


def _items(outcomes: Sequence[float | None], lt: Sequence[int], lb: Sequence[int]) -> Any:
    return items_from_records([{"outcome": o, "len_test": a, "len_baseline": b} for o, a, b in zip(outcomes, lt, lb)])


def _stats(**fields: Any) -> WinRateStats:
    base = dict(n=100, n_total=100, failures=0, failure_rate=0.0, wins=60, losses=40, ties=0, tie_policy="half",
                win_rate=0.6, sem=0.05, ci_low=0.5, ci_high=0.7, t=2.0, p_value=0.05)
    base.update(fields)
    return WinRateStats(**base)


# ------------------------------------------------------------------------------------- 1. degenerate fits
@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("min_items", [None, "1"])
def test_lc_gate_never_passes_on_one_to_three_wins(registry, tmp_path, capsys, n, min_items):
    good = _responses(tmp_path / "good.jsonl", [f"GOOD answer {'word ' * i}" for i in range(n)])
    bad = _responses(tmp_path / "bad.jsonl", ["weak"] * n)
    extra = ["--min-items", min_items] if min_items else []
    code, out, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "evidence",
                           "--metric", "lc_win_rate", "--margin", "0", "--json", *extra], capsys, registry)
    summary = json.loads(out)
    assert code == 3 and summary["gate"]["decision"] == "inconclusive", err
    assert summary["wins"] == n and "Traceback" not in err
    if min_items is None:
        assert "fewer than min_items 20" in summary["gate"]["reason"]
    # even with the minimum lowered to 1 the interval is honest: n identical outcomes support only a Wilson CI
    lo, hi = summary["lc_ci_low"], summary["lc_ci_high"]
    assert (lo, hi) == pytest.approx(wilson_interval(1.0, n)) and hi - lo > 0.5
    assert summary["lc_ci_method"].startswith("wilson")


@pytest.mark.parametrize("metric", ["win_rate", "lc_win_rate", "balanced_win_rate"])
@pytest.mark.parametrize("judge", [["--judge", "evidence"], ["--judge", "constant"]])
def test_same_file_as_candidate_and_baseline_never_passes(registry, tmp_path, capsys, metric, judge):
    same = _responses(tmp_path / "same.jsonl", [f"GOOD answer {'x ' * (i % 7)}" for i in range(60)])
    code, out, err = _run([*BASE, "--candidate", str(same), "--baseline", str(same), *judge, "--metric", metric,
                           "--margin", "0", "--json"], capsys, registry)
    assert code == 3, err
    assert json.loads(out)["gate"]["decision"] == "inconclusive"


def test_all_ties_lc_interval_is_not_a_point():
    s = compute_stats(_items([0.5] * 60, [10] * 60, [10] * 60), bootstrap=200, seed=1)
    assert s.lc_win_rate == pytest.approx(0.5)
    assert s.lc_ci_low < 0.4 and s.lc_ci_high > 0.6  # was [0.5, 0.5]
    assert gate(s, metric="lc_win_rate").decision == "inconclusive"


def test_separable_length_model_has_no_lc_ci_and_the_gate_says_why():
    n = 40  # the candidate wins exactly when it is longer: length and quality cannot be told apart
    lt = [10 + i for i in range(n)]
    s = compute_stats(_items([1 if a > 30 else 0 for a in lt], lt, [30] * n), bootstrap=200, seed=1)
    assert s.lc_ci_low is None and s.lc_ci_high is None
    g = gate(s, metric="lc_win_rate")
    assert g.decision == "inconclusive" and "separable" in g.reason and "balanced" not in g.reason


def test_balanced_stratum_of_one_item_is_not_certain():
    # one test-longer item (a win) and 100 shorter wins: the old SE was 0 and the Wilson CI of n = 101 followed
    s = compute_stats(_items([1] * 101, [20] + [5] * 100, [10] * 101), bootstrap=0)
    assert s.balanced_win_rate == 1.0 and s.balanced_ci_low < 0.75
    assert any("Agresti-Coull" in note for note in s.notes)


def test_constant_length_lc_is_the_raw_rate_with_a_real_bootstrap():
    s = compute_stats(_items([1, 0, 1, 1, 0.5] * 10, [10] * 50, [10] * 50), bootstrap=300, seed=1)
    assert s.lc_win_rate == pytest.approx(s.win_rate, abs=0.01)
    assert s.lc_ci_method == "bootstrap percentile" and s.lc_ci_high - s.lc_ci_low > 0.1


# ------------------------------------------------------------------------------------- 2. strictness
def test_equality_never_passes_and_zero_width_is_inconclusive():
    at_threshold = gate(_stats(lc_win_rate=0.6, lc_ci_low=0.5, lc_ci_high=0.7), metric="lc_win_rate")
    assert at_threshold.decision == "inconclusive"  # lower bound == 0.5 is not "demonstrably better"
    point = gate(_stats(lc_win_rate=0.5, lc_ci_low=0.5, lc_ci_high=0.5), metric="lc_win_rate", margin=0.1)
    assert point.decision == "inconclusive" and "zero-width" in point.reason
    near = gate(_stats(lc_win_rate=0.966, lc_ci_low=0.9660, lc_ci_high=0.9661), metric="lc_win_rate")
    assert near.decision == "inconclusive" and "zero-width" in near.reason
    assert gate(_stats(ci_low=0.5001, ci_high=0.7)).decision == "pass"


# ------------------------------------------------------------------------------------- 3. own SE
def test_logistic_near_separation_reports_the_fits_uncertainty():
    # n = 9 with 6 wins, nearly separated by length: σ(b0) ≈ 0.997, whose binomial SE is ~0.02
    lt, lb = [25, 28, 41, 7, 49, 43, 46, 36, 50], [46, 34, 45, 32, 28, 39, 16, 18, 29]
    s = compute_stats(_items([1] * 6 + [0] * 3, lt, lb), bootstrap=0)
    assert s.logistic_win_rate > 0.99
    assert s.logistic_ci_high - s.logistic_ci_low > 0.5  # the fit knows it knows little
    assert s.logistic_paper_ci_high - s.logistic_paper_ci_low < 0.1  # what the paper's formula would claim
    assert s.logistic_p_value > 0.05


def test_logistic_se_is_the_glm_standard_error():
    sm = pytest.importorskip("statsmodels.api")
    import numpy as np

    from sami_toolkit.evaluation.stats import length_feature

    rng = np.random.default_rng(5)
    lt, lb = rng.integers(20, 300, 300), rng.integers(20, 300, 300)
    y = (rng.random(300) < np.where(lt > lb, 0.7, 0.45)).astype(float)
    s = compute_stats(_items(y.tolist(), lt.tolist(), lb.tolist()), bootstrap=0)
    x = length_feature((lt - lb).astype(float))
    ref = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit()
    p = s.logistic_win_rate
    assert s.logistic_sem / (p * (1 - p)) == pytest.approx(ref.bse[0], rel=1e-4)
    assert math.log(s.logistic_ci_low / (1 - s.logistic_ci_low)) == pytest.approx(
        ref.params[0] - 1.96 * ref.bse[0], rel=1e-4)


# ------------------------------------------------------------------------------------- 4. minimum n
def test_minimum_items_is_enforced_documented_and_configurable(registry, tmp_path, capsys):
    def wins(n: int) -> WinRateStats:
        return compute_stats(_items([1] * n, [5] * n, [5] * n), bootstrap=0)

    assert DEFAULT_MIN_ITEMS == 20
    below = gate(wins(19))
    assert below.decision == "inconclusive" and "min_items 20" in below.reason
    assert gate(wins(20)).decision == "pass"
    # the arithmetic of docs/ci-gate.md: a perfect record excludes 0.5 (one-sided 2.5%, exact) only from n = 6 on
    assert 0.5 ** 5 > 0.025 >= 0.5 ** 6
    doc = (Path(__file__).parent.parent / "docs" / "ci-gate.md").read_text()
    assert "## Minimum sample size" in doc and "`--min-items`" in doc and "(default 20;" in doc
    good = _responses(tmp_path / "good.jsonl", ["GOOD"] * 10)
    bad = _responses(tmp_path / "bad.jsonl", ["weak"] * 10)
    args = [*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "evidence"]
    assert _run(args, capsys, registry)[0] == 3
    assert _run([*args, "--min-items", "5"], capsys, registry)[0] == 0  # Wilson(1, 10) = [0.72, 1]
    code, _, err = _run([*args, "--min-items", "0"], capsys, registry)
    assert code == 2 and "Traceback" not in err


# ------------------------------------------------------------------------------------- 5. stats == compare
def test_eval_stats_reproduces_compare_from_the_judgments_file(registry, tmp_path, capsys):
    good = _responses(tmp_path / "good.jsonl", [f"GOOD answer {'word ' * (i % 9)}" for i in range(50)]
                      + [f"meh {'word ' * (i % 5)}" for i in range(30)])
    bad = _responses(tmp_path / "bad.jsonl", [f"GOOD {'w ' * (i % 4)}" if i % 3 == 0 else f"weak {'w ' * (i % 6)}"
                                              for i in range(80)])
    judgments = tmp_path / "j.jsonl"
    code, out, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "evidence",
                           "--seed", "7", "--bootstrap", "300", "--ties", "loss", "--judgments", str(judgments),
                           "--json"], capsys, registry)
    assert code in (0, 1, 3), err
    summary = json.loads(out)
    assert summary["stats_settings"] == {"ties": "loss", "bootstrap": 300, "seed": 7}
    assert summary["lc_ci_method"] == "bootstrap percentile"
    code, out, err = _run(["eval", "stats", str(judgments), "--json"], capsys, registry)
    assert code == 0, err
    again = json.loads(out)
    numbers = [k for k, v in again.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert {"lc_ci_low", "lc_ci_high", "bootstrap_ci_low", "logistic_ci_low", "balanced_ci_low"} <= set(numbers)
    assert {k: again[k] for k in numbers} == {k: summary[k] for k in numbers}
    assert (again["seed"], again["bootstrap"], again["tie_policy"]) == (7, 300, "loss")
    # flags still override the recorded settings
    code, out, _ = _run(["eval", "stats", str(judgments), "--json", "--seed", "0"], capsys, registry)
    assert json.loads(out)["seed"] == 0 and json.loads(out)["lc_ci_low"] != summary["lc_ci_low"]
    _, _, err = _run(["eval", "stats", str(judgments)], capsys, registry)
    assert "seed 7" in err and "stats_settings" in err


def test_bad_stats_settings_in_a_file_is_a_config_error(registry, tmp_path, capsys):
    f = tmp_path / "j.jsonl"
    f.write_text(json.dumps({"outcome": 1, "stats_settings": {"seed": -1}}) + "\n")
    code, _, err = _run(["eval", "stats", str(f)], capsys, registry)
    assert code == 2 and "stats_settings.seed" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------- 6. broken judges
def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return port


@pytest.mark.parametrize("transport", ["auto", "litellm"])
def test_unreachable_judge_is_an_infrastructure_error(registry, tmp_path, capsys, monkeypatch, transport):
    pytest.importorskip("sami_kit_litellm")
    monkeypatch.setenv("W1_TEST_KEY", "sk-test-0123456789")
    monkeypatch.setenv("SAMI_KIT_CACHE", str(tmp_path / "cache"))
    good = _responses(tmp_path / "good.jsonl", ["GOOD"] * 100)
    bad = _responses(tmp_path / "bad.jsonl", ["weak"] * 100)
    start = time.perf_counter()
    code, _, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "litellm",
                         "--judge-option", "model=openai/gpt-4-0613",
                         "--judge-option", f"api_base=http://127.0.0.1:{_closed_port()}/v1",
                         "--judge-option", "api_key_env=W1_TEST_KEY", "--judge-option", "max_retries=1",
                         "--judge-option", "retry_backoff=0", "--judge-option", f"transport={transport}",
                         "--judge-option", "cache_path=none"], capsys, registry)
    assert code == 4, err
    assert "cannot connect" in err and "Traceback" not in err and "sk-test-0123456789" not in err
    assert time.perf_counter() - start < 60


def test_failure_rate_above_the_threshold_is_exit_4_with_the_numbers(registry, tmp_path, capsys):
    good = _responses(tmp_path / "good.jsonl", [f"GOOD {'FAIL' if i % 10 < 3 else ''}" for i in range(60)])
    bad = _responses(tmp_path / "bad.jsonl", ["weak"] * 60)
    args = [*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "evidence",
            "--judge-option", "fail_marker=FAIL", "--out-dir", str(tmp_path / "out"),
            "--junit", str(tmp_path / "j.xml")]
    code, _, err = _run(args, capsys, registry)
    assert code == 4, err
    assert "18 of 60 judgments failed (30%)" in err and "max_failure_rate 20%" in err
    assert "server exploded" in err  # the most common error is on the console, not only in the file
    assert (tmp_path / "out" / "judgments.jsonl").is_file()  # written for the post-mortem
    assert ET.parse(tmp_path / "j.xml").getroot().find("testsuite/testcase/error") is not None
    code, _, err = _run([*args, "--max-failure-rate", "0.5"], capsys, registry)
    assert code == 0, err
    code, _, err = _run([*args, "--max-failure-rate", "1.5"], capsys, registry)
    assert code == 2 and "Traceback" not in err


# ------------------------------------------------------------------------------------- 7. console
def test_health_warnings_cost_and_cache_hits_are_on_the_console(registry, tmp_path, capsys):
    good = _responses(tmp_path / "good.jsonl", ["GOOD"] * 60)
    bad = _responses(tmp_path / "bad.jsonl", ["weak"] * 60)
    code, _, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "constant",
                         "--judge-option", "model=gpt-4o", "-o", "candidate.label=gpt-4o-mini-sami"], capsys, registry)
    assert code == 3
    assert "warning: position bias: slot A won 100.0%" in err
    assert "warning: the judge (gpt-4o) shares the 'gpt' model family" in err
    assert "judge cost $0.0000; 0 of 60 judged item(s) from the cache" in err
    code, _, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "evidence",
                         "--judge-option", "cost=0.001", "--markdown", str(tmp_path / "s.md")], capsys, registry)
    assert code == 0 and "judge cost $0.0600" in err
    assert "judge cost $0.0600" in (tmp_path / "s.md").read_text()


# ------------------------------------------------------------------------------------- 8. bootstrap bounds
def test_bootstrap_is_bounded_with_a_clear_message(registry, tmp_path, capsys):
    f = tmp_path / "j.jsonl"
    f.write_text("".join(json.dumps({"outcome": o, "len_test": 3, "len_baseline": 2}) + "\n" for o in (1, 0)))
    for value in ("1000000000", "1e12", "-1"):
        start = time.perf_counter()
        code, _, err = _run(["eval", "stats", str(f), "--bootstrap", value], capsys, registry)
        assert code == 2 and "--bootstrap" in err and "Traceback" not in err, value
        assert time.perf_counter() - start < 5
    with pytest.raises(ConfigError, match="from 0 to 100,000"):
        compute_stats(_items([1, 0], [3, 3], [2, 2]), bootstrap=10**9)
    assert MAX_BOOTSTRAP == 100_000
    # the work bound: replicates x distinct cells (each replicate refits over every cell)
    n = 3000
    many = _items([i % 2 for i in range(n)], [10 + i for i in range(n)], [10] * n)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="cells") as exc:
        compute_stats(many, bootstrap=MAX_BOOTSTRAP)
    assert "--bootstrap" in str(exc.value) and time.perf_counter() - start < 5
    # an eval config with a huge bootstrap is refused before any judging
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"candidate: {{responses: {f}}}\nbaseline: {{responses: {f}}}\n"
                   "constitution: '1. Be helpful.'\njudge: {name: evidence}\nbootstrap: 1e12\n")
    code, _, err = _run(["eval", "compare", "--config", str(cfg)], capsys, registry)
    assert code == 2 and "bootstrap" in err and "Traceback" not in err


def test_cli_bound_matches_the_statistics():
    from sami_toolkit.cli import eval_cmd
    from sami_toolkit.evaluation.config import EvalConfig

    assert eval_cmd.MAX_BOOTSTRAP == MAX_BOOTSTRAP
    meta = {type(m).__name__: m for m in EvalConfig.model_fields["bootstrap"].metadata}
    assert meta["Le"].le == MAX_BOOTSTRAP


# ------------------------------------------------------------------------------------- 9. secrets
def test_an_echoed_key_reaches_no_output(registry, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    good = _responses(tmp_path / "good.jsonl", [f"GOOD {'FAIL' if i == 0 else ''}" for i in range(60)])
    bad = _responses(tmp_path / "bad.jsonl", ["weak"] * 60)
    out_dir = tmp_path / "out"
    code, out, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "evidence",
                           "--judge-option", "echo_key=true", "--judge-option", "fail_marker=FAIL",
                           "--out-dir", str(out_dir), "--junit", str(tmp_path / "g.xml"), "--markdown",
                           str(tmp_path / "s.md"), "--html", str(tmp_path / "p.html"), "--json"], capsys, registry)
    assert code == 0, err
    texts = {"stdout": out, "stderr": err}
    for path in [out_dir / "judgments.jsonl", out_dir / "summary.json", tmp_path / "g.xml", tmp_path / "s.md",
                 tmp_path / "p.html"]:
        texts[path.name] = path.read_text()
    for name, text in texts.items():
        assert SECRET not in text, name
    rows = [json.loads(line) for line in (out_dir / "judgments.jsonl").read_text().splitlines()]
    assert "***" in rows[1]["raw"][0] and "***" in rows[0]["error"]  # masked, not dropped


def test_win_rate_evaluator_file_is_scrubbed_and_reproducible(registry, tmp_path, tiny_model_dir, monkeypatch):
    from sami_toolkit.core.records import Query
    from sami_toolkit.evaluation.context import EvalContext
    from sami_toolkit.text.principles import load_principle_set

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    queries = [Query(id=f"q{i}", text=f"Q {i}?") for i in range(4)]
    ctx = EvalContext(model="candidate", base_model="base", queries=queries,
                      principle_set=load_principle_set("hh-rlhf"), templates=None, task="hh-rlhf",
                      sampler=registry.create("samplers", "echo", {"prefix": "GOOD "}),
                      judge=registry.create("judges", "evidence", {"echo_key": True}), out_dir=tmp_path / "eval",
                      seed=3, options={"cache_dir": str(tmp_path / "cache")})
    evaluator = registry.create("evaluators", "win-rate", {"length_tokenizer": str(tiny_model_dir), "bootstrap": 50})
    evaluator.evaluate(ctx)
    text = (tmp_path / "eval" / "win_rate_vs_base.jsonl").read_text()
    assert SECRET not in text and "***" in text
    assert json.loads(text.splitlines()[0])["stats_settings"] == {"ties": "half", "bootstrap": 50, "seed": 3}
