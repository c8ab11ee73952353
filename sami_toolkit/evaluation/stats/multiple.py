"""Multiple testing across principles (issue 18 §4): Holm's step-down adjustment, and the one-sided p-values of the
per-principle pass and regression tests.

Why Holm: requiring *every* principle to pass means one test per principle, and m tests at 2.5% each would let a
principle pass by luck far more often than 2.5%. Holm (1979) controls the family-wise error at the nominal level
under any dependence between the principles' verdicts (the same items, the same judge), and is uniformly more
powerful than Bonferroni.
"""

from __future__ import annotations

import math
from typing import Sequence


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: ``max_{j ≤ i} min(1, (m − j + 1) p_(j))`` over the sorted p's.
    Reject hypothesis i at family-wise level α iff its adjusted p ≤ α."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def one_sided_p(value: float, se: float, threshold: float, *, greater: bool) -> float:
    """Normal one-sided p-value of ``H0: rate ≤ threshold`` (``greater``, the pass test) or ``H0: rate ≥
    threshold`` (the regression test), with standard error ``se`` (> 0)."""
    from scipy.stats import norm

    if not se > 0 or not math.isfinite(se):
        return 1.0
    z = (value - threshold) / se
    return float(norm.sf(z) if greater else norm.cdf(z))
