"""The three length-corrected win rates of one set of judged items, each with an uncertainty of its own
(spec §8.4, anchors-eval §3, issue 14 §1):

* :func:`balanced` — Figure 2b: the unweighted mean of the test-longer and shorter-or-equal strata, with the
  stratified SE. A stratum whose sample variance is 0 or undefined (one item, or items that all agree) gets the
  Agresti–Coull variance instead, so one or two lucky items never make a zero-width interval.
* :func:`logistic` — the Tables 2–3 reconstruction: an unregularised logistic fit whose rate σ(b0) gets the
  **fit's own** delta-method SE and a logit-scale interval. The paper applied the binomial formula of spec §8.5
  to the fitted rate, which ignores the fit's uncertainty and shrinks to nothing near separation (n = 9 with 6
  wins printed "100.0% ±0.3"); those numbers are kept beside it as ``logistic_paper_*`` to reproduce the tables.
* :func:`lc_glm` — the AlpacaEval-style GLM with a refitting percentile bootstrap. When the data cannot identify
  the length correction — every item has the same outcome, or length alone predicts every decisive verdict —
  the bootstrap would only replay the prior, so it is replaced by an honest interval (the Wilson interval of the
  raw rate) or by no interval at all, which makes the gate inconclusive with the reason.

Each function fills its fields of a :class:`~sami_toolkit.evaluation.stats.win_rates.WinRateStats` and appends a
note for anything it could not compute.  numpy/scipy are imported inside the functions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.evaluation.stats.logistic import cells, fit_logistic, intercept_se, length_feature, sigmoid
from sami_toolkit.evaluation.stats.proportions import (
    Z95,
    agresti_coull_variance,
    logit_interval,
    proportion_summary,
    wilson_interval,
)

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.evaluation.stats.win_rates import WinRateStats

#: L2 penalty of the lc_win_rate GLM (a N(0, 1/LC_L2) prior on θ and φ): negligible at n ≥ 50, keeps a
#: one-sided run (all wins) finite
LC_L2 = 0.01

#: the most bootstrap work ``compute_stats`` accepts: replicates × distinct (outcome, length difference) cells.
#: Every replicate draws and refits over all cells, so this bounds time (measured on the 2-core dev machine at
#: 160–230 ns per replicate-cell: about 20 s at the limit) and memory (draws go in chunks of 2e7 cells). The
#: default 1000 replicates on 100,000 items with 3,363 cells is 3.4e6 (1.3 s).
MAX_BOOTSTRAP_WORK = 100_000_000


def balanced(result: "WinRateStats", o: Any, delta: Any) -> None:
    """Figure 2b (spec §8.4): ties = 0.5; mean over test-longer and shorter-or-equal strata, unweighted."""
    import numpy as np

    w = np.where(o == 0.5, 0.5, o)
    longer = delta > 0
    n_l, n_s = int(longer.sum()), int((~longer).sum())
    result.n_test_longer, result.n_test_shorter_or_equal = n_l, n_s
    if n_l == 0 or n_s == 0:
        empty = "test-longer" if n_l == 0 else "test-shorter-or-equal"
        result.notes.append(f"balanced win rate undefined: the {empty} stratum is empty")
        return
    m_l, m_s = float(w[longer].mean()), float(w[~longer].mean())
    value = 0.5 * (m_l + m_s)
    var_l, floored_l = _stratum_variance(w[longer], m_l)
    var_s, floored_s = _stratum_variance(w[~longer], m_s)
    if floored_l or floored_s:
        result.notes.append("balanced win rate: a stratum with one item or no variation got the Agresti-Coull "
                            "variance (a sample variance of 0 would claim certainty)")
    se = 0.5 * math.sqrt(var_l / n_l + var_s / n_s)
    result.balanced_win_rate = value
    result.balanced_sem = se
    result.balanced_ci_low = max(0.0, value - Z95 * se)
    result.balanced_ci_high = min(1.0, value + Z95 * se)


def _stratum_variance(values: Any, mean: float) -> tuple[float, bool]:
    """The stratum's sample variance (ddof = 1), or the Agresti–Coull variance when that is 0 or undefined;
    the flag says whether the floor was used."""
    if len(values) > 1:
        var = float(values.var(ddof=1))
        if var > 0:
            return var, False
    return agresti_coull_variance(mean, len(values)), True


def logistic(result: "WinRateStats", o: Any, delta: Any) -> None:
    """Tables 2–3 reconstruction (spec §8.4): [test wins] (ties = 0) ~ 1 + tanh(Δℓ/sd), unregularised.

    ``logistic_sem`` / ``_ci_*`` / ``_t`` / ``_p_value`` are the fit's own (delta method on the intercept's SE,
    logit-scale Wald interval, z = b0 / SE(b0) with n − 2 degrees of freedom); ``logistic_paper_*`` apply spec
    §8.5 to the fitted rate, as the paper's tables did."""
    from scipy.special import stdtr

    y = (o == 1.0).astype(float)
    n = len(y)
    if y.min() == y.max():
        result.notes.append("logistic win rate undefined: every item has the same binary outcome "
                            "(the unregularised fit diverges)")
        return
    ly, lx, lc = cells(y, length_feature(delta))
    beta, ok = fit_logistic(lx, ly, lc)
    if not ok[0]:
        result.notes.append("logistic win rate undefined: the length model is separable (fit diverged)")
        return
    b0 = float(beta[0, 0])
    value = float(sigmoid(b0))
    se_b0 = intercept_se(lx, lc, beta[0])
    result.logistic_win_rate = value
    if math.isfinite(se_b0) and se_b0 > 0:
        result.logistic_sem = value * (1 - value) * se_b0
        result.logistic_ci_low, result.logistic_ci_high = logit_interval(b0, se_b0)
        result.logistic_t = b0 / se_b0
        result.logistic_p_value = float(2 * stdtr(max(n - 2, 1), -abs(result.logistic_t)))
    paper = proportion_summary(value, n)
    result.logistic_paper_sem, result.logistic_paper_ci_low, result.logistic_paper_ci_high = (
        paper["sem"], paper["ci_low"], paper["ci_high"])
    result.logistic_paper_t, result.logistic_paper_p_value = paper["t"], paper["p_value"]


def lc_glm(result: "WinRateStats", labels: Any, delta: Any, *, bootstrap: int, seed: int) -> None:
    """AlpacaEval-style LC on this run's items with a refitting percentile bootstrap (anchors-eval §3.6), or an
    honest fallback where the data cannot identify the length correction."""
    import numpy as np

    x = length_feature(delta)
    cy, cx, cc = cells(labels, x)
    beta, ok = fit_logistic(cx, cy, cc, l2=LC_L2)
    if not ok[0]:
        result.notes.append("lc win rate: the GLM did not converge")
        return
    result.lc_win_rate = float(sigmoid(beta[0, 0]))
    result.length_coefficient = float(beta[0, 1])
    n = int(cc.sum())
    if float(np.ptp(labels)) == 0.0:
        # one outcome for every item: the data say nothing about φ, the estimate is the prior's, and every
        # bootstrap replicate is the same data again (a zero-width CI). The raw rate's Wilson interval is what n
        # identical outcomes do support.
        result.lc_ci_low, result.lc_ci_high = wilson_interval(float(labels[0]), n)
        result.lc_ci_method = "wilson (every item has the same outcome)"
        result.notes.append("lc win rate: every item has the same outcome, so the length correction is not "
                            "identified; its CI is the Wilson interval of the raw rate, not a bootstrap")
        return
    if not fit_logistic(cx, cy, cc)[1][0]:
        # the unpenalised fit diverges: length alone predicts every decisive verdict, so the rate at equal
        # length is an extrapolation the prior decides; no interval is honest
        result.notes.append("lc win rate has no CI: length alone predicts every decisive verdict (the length "
                            "model is separable), so length and quality cannot be told apart")
        return
    if bootstrap <= 0:
        result.notes.append("lc win rate CI needs the bootstrap (--bootstrap > 0)")
        return
    check_bootstrap_work(bootstrap, len(cc))
    boot = _lc_bootstrap(cy, cx, cc, beta[0], bootstrap=bootstrap, seed=seed, n=n)
    set_bootstrap_ci(result, "lc", boot, model="LC GLM")


def set_bootstrap_ci(result: "WinRateStats", metric: str, boot: Any, *, model: str) -> None:
    """``{metric}_sem`` and the 95% percentile CI of a refitting bootstrap's rates (``nan`` = a replicate whose
    fit did not converge: left out, and counted in a note), for the LC and style-controlled win rates."""
    import numpy as np

    good = boot[~np.isnan(boot)]
    if len(good) < len(boot):
        result.notes.append(f"{len(boot) - len(good)} bootstrap replicate(s) of the {model} did not converge")
    if len(good):
        setattr(result, f"{metric}_sem", float(good.std(ddof=1)) if len(good) > 1 else 0.0)
        low, high = (float(v) for v in np.quantile(good, [0.025, 0.975]))
        setattr(result, f"{metric}_ci_low", low)
        setattr(result, f"{metric}_ci_high", high)
        setattr(result, f"{metric}_ci_method", "bootstrap percentile")


def check_bootstrap_work(bootstrap: int, n_cells: int) -> None:
    """Refuse a bootstrap whose work (replicates × cells) exceeds :data:`MAX_BOOTSTRAP_WORK` (exit 2)."""
    work = bootstrap * max(n_cells, 1)
    if work > MAX_BOOTSTRAP_WORK:
        most = max(1, MAX_BOOTSTRAP_WORK // max(n_cells, 1))
        raise ConfigError(f"--bootstrap {bootstrap}: {bootstrap} replicates x {n_cells} distinct (outcome, length) "
                          f"cells is {work:.2g} refits-by-cells, above the limit of {MAX_BOOTSTRAP_WORK:.0e}",
                          hint=f"use --bootstrap {most} or fewer (1000 is plenty for a 95% percentile CI)")


def _lc_bootstrap(cy: Any, cx: Any, cc: Any, start: Any, *, bootstrap: int, seed: int, n: int) -> Any:
    """The LC rate of ``bootstrap`` replicates (NaN where a refit did not converge)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    # Resampling items with replacement == multinomial counts over the distinct cells. The length feature's
    # standardisation is kept fixed across replicates (its sd varies by < 1/sqrt(n) and only rescales φ).
    # After drawing, cells with the same x are merged (total count and label-weighted count per x), so each
    # Newton step works on [B, distinct x] instead of [B, distinct (label, x)].
    starts = np.flatnonzero(np.r_[True, cx[1:] != cx[:-1]])
    ux = cx[starts]
    chunk = max(1, int(2e7 // max(len(cc), 1)))
    rates = []
    for first in range(0, bootstrap, chunk):
        size = min(chunk, bootstrap - first)
        counts = rng.multinomial(n, cc / n, size=size).astype(float)
        totals = np.add.reduceat(counts, starts, axis=1)
        wins = np.add.reduceat(counts * cy, starts, axis=1)
        b, conv = fit_logistic(ux, None, totals, successes=wins, l2=LC_L2, start=start, tol=1e-12)
        rates.append(np.where(conv, sigmoid(b[:, 0]), np.nan))
    return np.concatenate(rates)
