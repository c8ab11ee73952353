"""The label-free judge probe (issue 18 §3): the position-flip rate on real items judged in both orders, and the
correlation of the verdicts with the length difference — both reported in judge health.

Why: a calibration set costs labels; these two cost (almost) nothing and catch the two best-documented judge
biases. A judge whose winner changes when the answers swap places (FastChat #3911: 12.9% for GPT-4) is partly
reading positions; a strong correlation of the outcome with the length difference (the longer answer won 68%)
is length bias — or a candidate that really is better when longer, which is why ``lc_win_rate`` and
``sc_win_rate`` exist. The correlation is reported, not gated on.
"""

from __future__ import annotations

import math
from typing import Any, Sequence


def flip_rate(original: Sequence[float | None], swapped: Sequence[float | None]) -> tuple[float | None, int]:
    """Share of items whose outcome changes when judged with the candidate in the other slot (failed judgments
    left out): ``(rate, n)``."""
    pairs = [(a, b) for a, b in zip(original, swapped) if a is not None and b is not None]
    if not pairs:
        return None, 0
    return sum(a != b for a, b in pairs) / len(pairs), len(pairs)


def length_correlation(outcomes: Sequence[float | None], len_test: Sequence[float | None],
                       len_baseline: Sequence[float | None]) -> dict[str, Any]:
    """Pearson correlation of the outcome (1 / 0.5 / 0) with the normalised length difference
    ``(ℓ_c − ℓ_b)/(ℓ_c + ℓ_b)``, its two-sided p-value, and the longer response's win rate among decisive items
    with unequal lengths (the FastChat #3911 number)."""
    import numpy as np
    from scipy.stats import pearsonr

    rows = [(o, t, b) for o, t, b in zip(outcomes, len_test, len_baseline)
            if o is not None and t is not None and b is not None and t + b > 0]
    out: dict[str, Any] = {"length_correlation": None, "length_correlation_p": None, "length_correlation_n": len(rows),
                           "longer_wins_rate": None, "longer_wins_n": 0}
    if len(rows) >= 3:
        o = np.array([r[0] for r in rows], dtype=float)
        d = np.array([(r[1] - r[2]) / (r[1] + r[2]) for r in rows], dtype=float)
        if np.ptp(o) > 0 and np.ptp(d) > 0:
            r, p = pearsonr(o, d)
            out["length_correlation"], out["length_correlation_p"] = float(r), float(p)
    decisive = [(o, t, b) for o, t, b in rows if o in (0.0, 1.0) and t != b]
    if decisive:
        longer = sum((o == 1.0) == (t > b) for o, t, b in decisive)
        out["longer_wins_rate"], out["longer_wins_n"] = longer / len(decisive), len(decisive)
    if out["length_correlation"] is not None and math.isnan(out["length_correlation"]):
        out["length_correlation"] = None
    return out
