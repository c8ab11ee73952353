"""Per-principle verdicts (``eval compare --per-principle``, issue 18 §4): the judge decides each principle of the
constitution separately — one verdict per principle per item — and the report shows a win rate with a 95% CI per
principle; with ``principle_gate: all`` the gate also requires every principle to pass, Holm-corrected.

The judge's own template is used with a one-principle constitution
(:data:`~sami_toolkit.text.prompts.PER_PRINCIPLE_CONSTITUTION`), so every judge, its cache and its parser work
unchanged. Each item keeps the slot the overall verdict gave the candidate. The cost is one judge call per
principle per item (× 2 with both orders).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.evaluation.config import EvalConfig
    from sami_toolkit.evaluation.stats import GateResult
    from sami_toolkit.judging.pairwise import ComparisonPair


def principle_texts(config: "EvalConfig", constitution: str) -> list[tuple[str, str]]:
    """``(name, text)`` of each principle: the set's names, or "principle k" for an explicit constitution."""
    from sami_toolkit.text.constitutions import parse_numbered

    texts = parse_numbered(constitution) if constitution.strip() else []
    if config.constitution is None and config.principles is not None:
        from sami_toolkit.text.principles import load_principle_set

        pset = load_principle_set(config.principles)
        names = list(config.principle_names or [p.name for p in pset.principles])
        if len(names) == len(texts):
            return list(zip(names, texts))
    if not texts:
        texts = [line.strip() for line in constitution.splitlines() if line.strip()]
    return [(f"principle {i}", t) for i, t in enumerate(texts, start=1)]


def judge_principles(judge: Any, pairs: Sequence["ComparisonPair"], positions: Sequence[str],
                     principles: Sequence[tuple[str, str]], config: "EvalConfig", *,
                     judge_fn: Callable[..., list[Any]]) -> tuple[dict[str, list[float | None]], float]:
    """Per-principle outcomes ``{name: [outcome per pair]}`` (1 / 0 / 0.5 / None), one judge call for all, and
    their cost."""
    from dataclasses import replace

    from sami_toolkit.text.prompts import per_principle_constitution

    items = [replace(pair, id=f"{pair.id}::{name}", constitution=per_principle_constitution(text))
             for name, text in principles for pair in pairs]
    outcomes = judge_fn(judge, items, seed=config.seed, both_orders=config.both_orders,
                        positions=list(positions) * len(principles))
    n = len(pairs)
    per = {name: [o.outcome for o in outcomes[k * n:(k + 1) * n]] for k, (name, _) in enumerate(principles)}
    return per, sum(o.cost for o in outcomes)


def principle_table(outcomes: dict[str, list[float | None]], *, ties: str, margin: float,
                    alpha: float = 0.05) -> list[dict[str, Any]]:
    """One row per principle: counts, win rate, 95% CI, the one-sided pass / regression p-values, their Holm
    adjustment across principles (family-wise ``alpha / 2`` per direction, as the 95% CI) and the verdict."""
    import math

    from sami_toolkit.evaluation.stats.items import scored_outcome
    from sami_toolkit.evaluation.stats.multiple import holm_adjust, one_sided_p
    from sami_toolkit.evaluation.stats.proportions import agresti_coull_variance, proportion_summary

    threshold = 0.5 - margin
    rows = []
    for name, values in outcomes.items():
        failed = sum(v is None for v in values)
        scored = [s for s in (scored_outcome(v, ties) for v in values) if s is not None]
        n = len(scored)
        row: dict[str, Any] = {"principle": name, "n": n, "wins": sum(v == 1.0 for v in values),
                               "ties": sum(v == 0.5 for v in values), "losses": sum(v == 0.0 for v in values),
                               "failures": failed, "win_rate": None, "ci_low": None, "ci_high": None,
                               "p_pass": 1.0, "p_fail": 1.0}
        if n:
            p = sum(scored) / n
            summary = proportion_summary(p, n)
            se = math.sqrt(max(p * (1 - p), agresti_coull_variance(p, n) if p in (0.0, 1.0) else 0.0) / n)
            row.update(win_rate=p, ci_low=summary["ci_low"], ci_high=summary["ci_high"],
                       p_pass=one_sided_p(p, se, threshold, greater=True),
                       p_fail=one_sided_p(p, se, threshold, greater=False))
        rows.append(row)
    for key in ("p_pass", "p_fail"):
        for row, adj in zip(rows, holm_adjust([r[key] for r in rows])):
            row[f"{key}_holm"] = adj
    for row in rows:
        row["verdict"] = ("pass" if row["p_pass_holm"] <= alpha / 2 else
                          "fail" if row["p_fail_holm"] <= alpha / 2 else "inconclusive")
    return rows


def principle_gate(overall: "GateResult", rows: Sequence[dict[str, Any]], *, min_items: int) -> "GateResult":
    """``principle_gate: all``: pass only if the overall gate passes **and** every principle passes (Holm);
    a regression if the overall gate fails or any principle regresses; otherwise inconclusive, naming them."""
    from dataclasses import replace

    from sami_toolkit.core.errors import ExitCode

    if overall.decision == "error":
        return overall
    failing = [r["principle"] for r in rows if r["verdict"] == "fail" and r["n"] >= min_items]
    open_ = [r["principle"] for r in rows if r["verdict"] != "pass" or r["n"] < min_items]
    if overall.decision == "fail":
        return overall
    if failing:
        return replace(overall, decision="fail", exit_code=int(ExitCode.GATE_FAILED),
                       reason=f"principle(s) {', '.join(failing)} regressed (Holm-adjusted, every principle must "
                              f"pass); overall: {overall.reason}")
    if overall.decision == "pass" and not open_:
        return replace(overall, reason=f"{overall.reason}; every principle passed (Holm-adjusted)")
    why = (f"principle(s) not shown to pass (Holm-adjusted): {', '.join(open_)}" if open_ else "")
    return replace(overall, decision="inconclusive", exit_code=int(ExitCode.INCONCLUSIVE),
                   reason="; ".join(x for x in (overall.reason if overall.decision != "pass" else
                                                f"overall passes ({overall.reason})", why) if x))
