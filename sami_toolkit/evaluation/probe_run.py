"""The label-free judge probe of ``eval compare`` (issue 18 §3), added to judge health: the position-flip rate on
a seeded sample of the real items judged again with the candidate in the other slot (``probe: N``; with
``both_orders`` every item already has both orders, at no extra cost), and the correlation of the verdicts with
the length difference (always; :mod:`~sami_toolkit.evaluation.stats.probe`)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.evaluation.config import EvalConfig

#: flip rate above which judge health warns (GPT-4 flipped 12.9% in FastChat #3911)
FLIP_WARNING = 0.2


def probe_health(health: dict[str, Any], judge: Any, pairs: Sequence[Any], positions: Sequence[str],
                 outcomes: Sequence[Any], len_c: Sequence[int], len_b: Sequence[int], config: "EvalConfig", *,
                 judge_fn: Callable[..., list[Any]]) -> float:
    """Add ``position_flip_rate`` / ``_n`` and the length correlation to ``health``; returns the probe's cost."""
    from sami_toolkit.evaluation.stats.probe import flip_rate, length_correlation
    from sami_toolkit.judging.pairwise import order_outcome, other_position

    health.update(length_correlation([o.outcome for o in outcomes], len_c, len_b))
    cost = 0.0
    original: list[float | None] = []
    swapped: list[float | None] = []
    if config.both_orders:
        for o in outcomes:
            if len(o.verdicts) >= 2:
                original.append(order_outcome(o.verdicts[0], o.candidate_position))
                swapped.append(order_outcome(o.verdicts[1], other_position(o.candidate_position)))
        source = "both orders of every item"
    elif config.probe > 0 and pairs:
        sample = sorted(random.Random(f"probe:{config.seed}").sample(range(len(pairs)), min(config.probe, len(pairs))))
        flipped_slots = [other_position(positions[i]) for i in sample]
        again = judge_fn(judge, [pairs[i] for i in sample], seed=config.seed, both_orders=False,
                         positions=flipped_slots)
        cost = sum(o.cost for o in again)
        original = [outcomes[i].outcome for i in sample]
        swapped = [o.outcome for o in again]
        source = f"{len(sample)} item(s) re-judged with the positions swapped"
    else:
        return cost
    rate, n = flip_rate(original, swapped)
    health["position_flip_rate"], health["position_flip_n"], health["position_flip_source"] = rate, n, source
    if rate is not None and n >= 10 and rate > FLIP_WARNING:
        health.setdefault("warnings", []).append(
            f"position flips: the winner changed in {rate:.0%} of {n} items when the answers swapped places")
    return cost
