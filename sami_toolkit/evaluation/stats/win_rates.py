"""Win-rate statistics of one set of judged items: raw rate with a tie policy, the paper's two length corrections,
and an AlpacaEval-style length-controlled GLM with a bootstrap CI (:class:`WinRateStats`, :func:`compute_stats`).

Why each number exists (spec §8.4–§8.5, anchors-eval §3, §8):

* ``win_rate`` — mean per-item outcome under the **tie policy** (spec §8.4b: ``half`` = 0.5, ``loss`` = 0,
  ``drop`` = remove tied items). Failed judgments (``outcome: null``) are counted in ``failures`` and never
  enter any rate (the paper's files stored them as 0.5; we do not).
* ``sem`` / ``ci_low`` / ``ci_high`` / ``t`` / ``p_value`` — spec §8.5 exactly: ``SE = sqrt(p(1-p)/n)``,
  ``p ± 1.96·SE``, ``t = (p-0.5)/SE`` and a two-sided p from the t distribution (df = n−1). For outcomes in
  [0, 1] with mean p the per-item variance is at most p(1−p), so with ties this SE is conservative. When the
  rate is exactly 0 or 1 the normal interval collapses to a point, so the Wilson interval is used instead.
* ``balanced_win_rate`` — Figure 2b (spec §8.4): ties = 0.5, items split into test-longer vs shorter-or-equal,
  the unweighted mean of the two stratum means. Its SEM is the stratified ``½·sqrt(v_L/n_L + v_S/n_S)``
  (a stratum of one item, or with no variation, gets the Agresti–Coull variance: never a zero-width CI).
* ``logistic_win_rate`` — Tables 2–3 reconstruction (spec §8.4): binary [test wins] (ties = 0), unregularised
  logistic regression on intercept + ``tanh(Δℓ/sd(Δℓ))``, reported as σ(intercept). Its SE, CI, t and p are the
  fit's own (delta method, logit-scale interval); ``logistic_paper_*`` apply spec §8.5 to the fitted rate, as the
  paper's tables did (kept to reproduce them; they ignore the fit's uncertainty).
* ``lc_win_rate`` — AlpacaEval-2-style length control fitted on this run's own items (anchors-eval §3.6,
  "minimal" variant without instruction difficulty): soft labels under the tie policy, the same tanh length
  feature, a weak Gaussian prior (L2 = ``LC_L2``) so a one-sided run stays finite, LC = σ(θ). Its CI is a
  percentile bootstrap over items that **refits the GLM** on every replicate (AlpacaEval's own ``lc_standard_error``
  ignores parameter uncertainty, anchors-eval §3.5). Where the data cannot identify the length correction (one
  outcome for every item, or length alone predicting every decisive verdict) the bootstrap would only replay the
  prior: the CI is then the raw rate's Wilson interval, or none (``lc_ci_method`` says which).

The definitions and fallbacks live in :mod:`.length_corrected`; this module holds the result and the raw rate.

The bootstrap is exact and fast: every statistic depends on an item only through its (outcome, Δℓ) cell, so
resampling n items with replacement equals drawing multinomial counts over the distinct cells. With integer token
lengths there are few cells even for 100,000 items, and all replicates' GLMs are fitted together by a vectorised
Newton/IRLS on a ``[B, cells]`` count matrix.

Only numpy/scipy are used, imported inside functions (the CLI imports this module lazily anyway).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.evaluation.stats.items import Items, tie_values
from sami_toolkit.evaluation.stats.length_corrected import balanced, lc_glm, logistic
from sami_toolkit.evaluation.stats.proportions import proportion_summary

GateMetric = Literal["win_rate", "lc_win_rate", "balanced_win_rate", "sc_win_rate"]
GATE_METRICS: tuple[str, ...] = ("win_rate", "lc_win_rate", "balanced_win_rate", "sc_win_rate")

DEFAULT_BOOTSTRAP = 1000
#: the most bootstrap replicates accepted (beyond ~10,000 a 95% percentile CI no longer moves; the bound keeps a
#: mistyped 1e9 from taking minutes and tens of GB); the work per replicate is bounded by MAX_BOOTSTRAP_WORK
MAX_BOOTSTRAP = 100_000


@dataclass
class WinRateStats:
    """Everything ``eval stats`` reports (rates are fractions in [0, 1]; JSON via :meth:`to_dict`)."""

    n: int
    n_total: int
    failures: int
    failure_rate: float
    wins: int
    losses: int
    ties: int
    tie_policy: str
    win_rate: float | None
    sem: float | None
    ci_low: float | None
    ci_high: float | None
    t: float | None
    p_value: float | None
    balanced_win_rate: float | None = None
    balanced_sem: float | None = None
    balanced_ci_low: float | None = None
    balanced_ci_high: float | None = None
    n_test_longer: int | None = None
    n_test_shorter_or_equal: int | None = None
    logistic_win_rate: float | None = None
    logistic_sem: float | None = None
    logistic_ci_low: float | None = None
    logistic_ci_high: float | None = None
    logistic_t: float | None = None
    logistic_p_value: float | None = None
    logistic_paper_sem: float | None = None
    logistic_paper_ci_low: float | None = None
    logistic_paper_ci_high: float | None = None
    logistic_paper_t: float | None = None
    logistic_paper_p_value: float | None = None
    lc_win_rate: float | None = None
    lc_sem: float | None = None
    lc_ci_low: float | None = None
    lc_ci_high: float | None = None
    lc_ci_method: str | None = None
    #: style control (:mod:`.style`): the rate at equal length and markdown, its bootstrap CI, the coefficients
    sc_win_rate: float | None = None
    sc_sem: float | None = None
    sc_ci_low: float | None = None
    sc_ci_high: float | None = None
    sc_ci_method: str | None = None
    sc_coefficients: dict[str, float] = field(default_factory=dict)
    length_coefficient: float | None = None
    bootstrap: int = 0
    seed: int = 0
    bootstrap_ci_low: float | None = None
    bootstrap_ci_high: float | None = None
    mean_len_test: float | None = None
    mean_len_baseline: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metric(self, name: str) -> tuple[float | None, float | None, float | None]:
        """``(value, ci_low, ci_high)`` of a gate metric."""
        if name == "win_rate":
            return self.win_rate, self.ci_low, self.ci_high
        if name == "balanced_win_rate":
            return self.balanced_win_rate, self.balanced_ci_low, self.balanced_ci_high
        if name == "lc_win_rate":
            return self.lc_win_rate, self.lc_ci_low, self.lc_ci_high
        if name == "sc_win_rate":
            return self.sc_win_rate, self.sc_ci_low, self.sc_ci_high
        raise ConfigError(f"unknown metric '{name}'; use one of: {', '.join(GATE_METRICS)}")


def compute_stats(items: Items, *, ties: str = "half", bootstrap: int = DEFAULT_BOOTSTRAP,
                  seed: int = 0) -> WinRateStats:
    """All statistics for one set of judged items (see the module docstring for each definition)."""
    import numpy as np

    tie_value = tie_values(ties)
    check_bootstrap(bootstrap)
    notes: list[str] = []
    n_total = len(items)
    outcome = np.array([np.nan if o is None else o for o in items.outcome], dtype=float)
    failed = np.isnan(outcome)
    n_failed = int(failed.sum())
    valid = ~failed
    wins = int((outcome == 1.0).sum())
    losses = int((outcome == 0.0).sum())
    n_ties = int((outcome == 0.5).sum())
    if n_failed:
        notes.append(f"{n_failed} failed judgment(s) excluded from every rate (not counted as ties)")

    keep = valid.copy()
    if tie_value is None:
        keep &= outcome != 0.5
        if n_ties:
            notes.append(f"{n_ties} tie(s) dropped (tie policy 'drop')")
    o = outcome[keep]
    scored = np.where(o == 0.5, tie_value if tie_value is not None else 0.5, o)
    n = int(keep.sum())

    result = WinRateStats(n=n, n_total=n_total, failures=n_failed,
                          failure_rate=(n_failed / n_total) if n_total else 0.0, wins=wins, losses=losses,
                          ties=n_ties, tie_policy=ties, win_rate=None, sem=None, ci_low=None, ci_high=None,
                          t=None, p_value=None, bootstrap=bootstrap, seed=seed, notes=notes)
    if n == 0:
        notes.append("no scorable items: every judgment failed or was dropped")
        return result
    p = float(scored.mean())
    summary = proportion_summary(p, n)
    result.win_rate = p
    result.sem, result.ci_low, result.ci_high = summary["sem"], summary["ci_low"], summary["ci_high"]
    result.t, result.p_value = summary["t"], summary["p_value"]

    # ----- lengths
    lt = np.array([np.nan if v is None else v for v in items.len_test], dtype=float)[keep]
    lb = np.array([np.nan if v is None else v for v in items.len_baseline], dtype=float)[keep]
    has_len = ~(np.isnan(lt) | np.isnan(lb))
    if not has_len.any():
        notes.append("no token lengths (len_test/len_baseline) in the input: length-corrected rates not computed")
    else:
        if not has_len.all():
            notes.append(f"{int((~has_len).sum())} item(s) without lengths left out of the length-corrected rates")
        result.mean_len_test = float(lt[has_len].mean())
        result.mean_len_baseline = float(lb[has_len].mean())
        o_l = o[has_len]
        delta = (lt - lb)[has_len]
        balanced(result, o_l, delta)
        logistic(result, o_l, delta)
        lc_labels = np.where(o_l == 0.5, tie_value if tie_value is not None else 0.5, o_l)
        lc_glm(result, lc_labels, delta, bootstrap=bootstrap, seed=seed)
        from sami_toolkit.evaluation.stats.style import style_control

        texts = [(t, b) for t, b, k in zip(items.text_test or [None] * n_total, items.text_baseline or [None] * n_total,
                                          keep) if k]
        text_t = [t for (t, _), h in zip(texts, has_len) if h]
        text_b = [b for (_, b), h in zip(texts, has_len) if h]
        style_control(result, lc_labels, lt[has_len], lb[has_len], text_t, text_b, bootstrap=bootstrap, seed=seed)

    # ----- bootstrap CI of the raw rate (reported beside the analytic one; cells = distinct outcome values)
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        vals, cnt = np.unique(scored, return_counts=True)
        draws = rng.multinomial(n, cnt / n, size=bootstrap)
        boot = draws @ vals / n
        result.bootstrap_ci_low, result.bootstrap_ci_high = (float(v) for v in np.quantile(boot, [0.025, 0.975]))
    return result


def check_bootstrap(bootstrap: int) -> None:
    """``bootstrap`` must be an int in 0..:data:`MAX_BOOTSTRAP` (exit 2 otherwise, before any work)."""
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise ConfigError(f"--bootstrap must be a whole number from 0 to {MAX_BOOTSTRAP:,}, got {bootstrap!r}",
                          hint="1000 replicates (the default) are plenty for a 95% percentile CI")
