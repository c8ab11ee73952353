"""Judge validity against labels (``--calibrate``, issue 18 §3): accuracy, Cohen's κ and position consistency of a
judge on pairs with a known better answer, each judged in both orders.

Why these three: accuracy alone rewards a judge that always says "A" on a set where A is usually better; Cohen's
κ (1960) is agreement beyond what the two marginal distributions give by chance (0 = chance, 1 = perfect); and
position consistency — the same winner in both orders — is the bias FastChat #3911 measured (12.9% of GPT-4
verdicts flipped when the answers swapped places). Each order's verdict counts as one rating, so a judge that
flips is penalised in accuracy and κ as well.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

#: the labels a calibration pair may carry (which response is better)
LABELS: tuple[str, ...] = ("A", "B", "tie")


def cohen_kappa(rater1: Sequence[str], rater2: Sequence[str]) -> float | None:
    """Cohen's κ of two raters over the same items (``None`` when chance agreement is 1: one category only)."""
    n = len(rater1)
    if n == 0 or n != len(rater2):
        return None
    cats = sorted(set(rater1) | set(rater2))
    observed = sum(a == b for a, b in zip(rater1, rater2)) / n
    expected = sum((list(rater1).count(c) / n) * (list(rater2).count(c) / n) for c in cats)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


@dataclass
class Agreement:
    """The calibration numbers (fractions)."""

    pairs: int
    ratings: int
    failures: int
    accuracy: float | None
    kappa: float | None
    position_consistency: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement(labels: Sequence[str], first: Sequence[str | None], second: Sequence[str | None]) -> Agreement:
    """Agreement of per-order verdicts with ``labels``. ``first`` / ``second`` are the better response *by name*
    (``"A"`` = the pair's response_a, ``"B"``, ``"tie"``, or ``None`` = the judgment failed) in each order. A
    failed rating counts as wrong in accuracy and as its own category in κ (a judge that does not answer is not
    valid); a pair is position-consistent when both orders name the same winner."""
    ratings, truth = [], []
    failures = 0
    consistent = 0
    for label, a, b in zip(labels, first, second):
        for verdict in (a, b):
            failures += verdict is None
            ratings.append(verdict or "failed")
            truth.append(label)
        consistent += a is not None and a == b
    n = len(labels)
    correct = sum(r == t for r, t in zip(ratings, truth))
    return Agreement(pairs=n, ratings=len(ratings), failures=failures,
                     accuracy=correct / len(ratings) if ratings else None, kappa=cohen_kappa(truth, ratings),
                     position_consistency=consistent / n if n else None)
