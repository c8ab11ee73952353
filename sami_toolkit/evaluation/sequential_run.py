"""Judging in rounds for the sequential gate (issue 18 §1): the item order is fixed by the seed, each round judges
the next share of the prompt set, and :func:`~sami_toolkit.evaluation.stats.sequential.evaluate_look` decides
after each round whether to stop.

Every item is judged in the slot a full run gives it (the seeded assignment of spec §8.3 over the whole prompt
set) and under the same shuffled constitution, so a stopped gate's verdicts sit in the judgment cache under the
keys a later full run looks up: the full run reuses every one of them.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.evaluation.config import EvalConfig
    from sami_toolkit.evaluation.stats import GateResult, WinRateStats
    from sami_toolkit.evaluation.stats.sequential import Look
    from sami_toolkit.judging.pairwise import ComparisonPair, PairOutcome


def judging_order(n: int, seed: int) -> list[int]:
    """The order items are judged in: a seeded permutation (not the file order, which may be sorted by topic)."""
    order = list(range(n))
    random.Random(f"sequential:{seed}").shuffle(order)
    return order


def judge_in_rounds(judge: Any, pairs: Sequence["ComparisonPair"], positions: Sequence[str],
                    config: "EvalConfig", *, judge_fn: Callable[..., list["PairOutcome"]],
                    report: Callable[[str], Any] | None = None) -> tuple[list["PairOutcome | None"], dict[str, Any]]:
    """``(outcome per pair or None when not judged, the sequential summary)``."""
    from sami_toolkit.evaluation.stats.items import scored_outcome
    from sami_toolkit.evaluation.stats.sequential import SequentialDesign, evaluate_look

    seq = config.sequential
    design = SequentialDesign.plan(len(pairs), round_fraction=seq.round, alpha=seq.alpha, spending=seq.spending,
                                   min_items=min(config.min_items, len(pairs)), futility=seq.futility)
    order = judging_order(len(pairs), config.seed)
    outcomes: list[PairOutcome | None] = [None] * len(pairs)
    looks: list[Look] = []
    scored: list[float] = []
    failures = done = 0
    threshold = 0.5 - config.margin
    for k, n_k in enumerate(design.looks):
        batch = order[done:n_k]
        results = judge_fn(judge, [pairs[i] for i in batch], seed=config.seed, both_orders=config.both_orders,
                           positions=[positions[i] for i in batch])
        for i, o in zip(batch, results):
            outcomes[i] = o
            if o.outcome is None:
                failures += 1
            else:
                v = scored_outcome(o.outcome, config.ties)
                if v is not None:
                    scored.append(v)
        done = n_k
        look = evaluate_look(design, k, scored, failures=failures, n_judged=done, threshold=threshold,
                             min_items=config.min_items, max_failure_rate=config.max_failure_rate)
        looks.append(look)
        if report is not None:
            report(f"sequential round {look.round}/{len(design.looks)}: {done} of {len(pairs)} judged, "
                   f"{look.decision} ({look.reason})")
        if look.decision != "continue":
            break
    orders = 2 if config.both_orders else 1
    summary = {"design": design.to_dict(), "looks": [look.to_dict() for look in looks],
               "decision": looks[-1].decision, "stopped_round": looks[-1].round, "rounds": len(design.looks),
               "items_judged": done, "items_total": len(pairs), "judge_calls": done * orders,
               "judge_calls_max": len(pairs) * orders, "judge_calls_saved": (len(pairs) - done) * orders,
               "metric": "win_rate", "order_seed": config.seed}
    return outcomes, summary


def sequential_gate(summary: dict[str, Any], stats: "WinRateStats", config: "EvalConfig") -> "GateResult":
    """The gate verdict of a sequential run: the last look's decision and its repeated CI."""
    from sami_toolkit.core.errors import ExitCode
    from sami_toolkit.evaluation.stats import GateResult

    look = summary["looks"][-1]
    codes = {"pass": ExitCode.OK, "fail": ExitCode.GATE_FAILED, "inconclusive": ExitCode.INCONCLUSIVE,
             "error": ExitCode.INFRASTRUCTURE}
    decision = look["decision"]
    saved = summary["judge_calls_saved"]
    reason = (f"sequential round {look['round']} of {summary['rounds']} ({summary['items_judged']} of "
              f"{summary['items_total']} items judged, {saved} judge call(s) saved): {look['reason']}")
    if decision == "error":
        reason += ": the judge is not working (the judgments file records each error)"
    return GateResult(metric="win_rate", margin=config.margin, threshold=0.5 - config.margin, value=look["value"],
                      ci_low=look["ci_low"], ci_high=look["ci_high"], decision=decision,
                      exit_code=int(codes[decision]), reason=reason, n=stats.n, min_items=config.min_items,
                      max_failure_rate=config.max_failure_rate)
