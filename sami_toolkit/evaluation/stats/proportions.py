"""A proportion's error bars and significance (spec §8.5), and the mean ± SEM of the figures' panels.

``SE = sqrt(p(1-p)/n)``, ``p ± 1.96·SE``, ``t = (p-0.5)/SE`` and a two-sided p from the t distribution
(df = n−1). For outcomes in [0, 1] with mean p the per-item variance is at most p(1−p), so with ties this SE is
conservative. When the rate is exactly 0 or 1 the normal interval collapses to a point, so the Wilson interval is
used instead.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

#: z for a two-sided 95% interval (spec §8.5 uses 1.96)
Z95 = 1.96


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (anchors-eval §8): used when p is 0 or 1 and the normal interval degenerates."""
    if n <= 0:
        return (0.0, 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def agresti_coull_variance(mean: float, n: int, z: float = Z95) -> float:
    """Per-item variance p̃(1−p̃) with the Agresti–Coull centre p̃ = (n·mean + z²/2)/(n + z²): never zero.

    Used where a sample variance is zero or undefined (a stratum of one item, or one whose items all agree): a
    variance of 0 would claim certainty that 1–3 items cannot give (issue 14 §1), whereas this is the variance
    behind the Wilson interval, which covers at the nominal rate even at p = 0 or 1."""
    centre = (n * mean + z * z / 2) / (n + z * z)
    return centre * (1 - centre)


def logit_interval(b0: float, se_b0: float, z: float = Z95) -> tuple[float, float]:
    """A Wald interval on the logit scale mapped to a rate, σ(b0 ± z·se): it stays inside (0, 1) and widens
    towards the far side near a bound, where a symmetric p ± z·SE would be cut off at 0 or 1."""
    def sigma(v: float) -> float:
        return 1.0 / (1.0 + math.exp(-max(-700.0, min(700.0, v))))

    return sigma(b0 - z * se_b0), sigma(b0 + z * se_b0)


def proportion_summary(p: float, n: int) -> dict[str, Any]:
    """Spec §8.5: SE = sqrt(p(1−p)/n), 95% CI p ± 1.96·SE, t = (p − 0.5)/SE, two-sided p (t, df = n−1)."""
    from scipy.special import stdtr  # the t CDF; far lighter to import than scipy.stats

    se = math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else float("nan")
    if n > 0 and se > 0:
        lo, hi = max(0.0, p - Z95 * se), min(1.0, p + Z95 * se)
        t = (p - 0.5) / se
        pval = float(2 * stdtr(max(n - 1, 1), -abs(t)))
    else:
        lo, hi = wilson_interval(p, n)
        t = None
        pval = None if n == 0 else (1.0 if p == 0.5 else 0.0)
    return {"sem": se, "ci_low": lo, "ci_high": hi, "t": t, "p_value": pval}


def p_value_label(p: float | None) -> str:
    """The paper's threshold notation (Tables 2–9): <0.001, <0.01, <0.05, >0.05."""
    if p is None:
        return "n/a"
    for cut in (0.001, 0.01, 0.05):
        if p < cut:
            return f"<{cut:g}"
    return ">0.05"


def mean_sem(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and SEM (std with ddof = 1 over √n; the figures' error bars, spec §8.5)."""
    import numpy as np

    arr = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))],
                     dtype=float)
    if arr.size == 0:
        return None, None
    sem = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else 0.0
    return float(arr.mean()), sem
