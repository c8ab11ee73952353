"""The sequential gate (``--sequential``, issue 18 §1): judge in rounds and stop paying the judge as soon as the
verdict is decided, with a group-sequential design whose error rates hold over every look.

**Design: Lan–DeMets alpha spending with the Pocock-type spending function** (Lan & DeMets 1983; Jennison &
Turnbull 2000, ch. 7). Why this and not a confidence sequence (betting / empirical Bernstein, Waudby-Smith &
Ramdas 2023, Howard et al. 2021): a CS is valid under *continuous* monitoring and an unbounded horizon, and pays
for it with a wider boundary; the gate looks only a few times (every ``round`` of the prompt set) and never beyond
the prompt set (``n_max``). At n_max = 250 and a true rate of 0.60, the betting test (predictable plug-in bet,
2.5% per side, checked after every item) judges 205 items on average and passes 31% of the time; this design judges
133 and passes 78% (``bench/bench_sequential.py``). The spending function is the Pocock type because it spends the
error early, which is what saves judge calls; O'Brien–Fleming would keep the final boundary near 1.96 but stop
late.

* Each wrong verdict gets ``alpha / 2`` (default ``alpha = 0.05``: the same 2.5% per side as the fixed gate's 95%
  CI). The spent error at look k is ``α/2 · ln(1 + (e − 1) t_k)`` with ``t_k = n_k / n_max``.
* The z boundaries are computed by numerical integration of the score process (Armitage, McPherson & Rowe 1969):
  the density of ``S_k = Z_k √t_k`` on the continuation region, convolved with the ``N(0, t_k − t_{k−1})``
  increment. Each side is computed on its own, ignoring absorption at the other side: slightly conservative.
  Looks with fewer than ``min_items`` items are not planned (they could not decide), so they spend nothing.
* The statistic at a look is ``z = (mean − θ) / (s / √n)`` with the sample SD ``s`` (ties lower it, which the
  design exploits), never zero (the Agresti–Coull variance when all outcomes agree).
* The repeated confidence interval ``mean ± b_k · s/√n`` is reported at every look; pass when its lower bound is
  above ``θ = 0.5 − margin``, regression when its upper bound is below.
* **Futility** (non-binding): from half the prompt set on, a look whose conditional power — the chance, at the
  current estimate, that the final look would still decide either way — is below ``futility`` (default 2%) stops
  as *inconclusive*. It never makes a pass or a regression, so it cannot raise either error rate; it stops paying
  for runs that cannot decide (at the threshold it saves ~40% of the calls, at 10 points from it ~6 more points,
  for ~2 points of power).

numpy/scipy are imported inside the functions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal, Sequence

from sami_toolkit.core.errors import ConfigError

Spending = Literal["pocock", "obrien-fleming"]
SPENDING_FUNCTIONS: tuple[str, ...] = ("pocock", "obrien-fleming")
LookDecision = Literal["pass", "fail", "continue", "inconclusive", "error"]


def spent(t: float, alpha: float, kind: str = "pocock") -> float:
    """Error spent by information fraction ``t`` (Lan–DeMets): Pocock type ``α ln(1 + (e−1)t)``, or the
    O'Brien–Fleming type ``2 − 2Φ(z_{α/2} / √t)`` (for a one-sided ``alpha``: ``2(1 − Φ(z_{1−α/2}/√t))``)."""
    from scipy.stats import norm

    t = min(max(t, 0.0), 1.0)
    if t <= 0:
        return 0.0
    if kind == "pocock":
        return alpha * math.log(1 + (math.e - 1) * t)
    if kind == "obrien-fleming":
        return float(2 * (1 - norm.cdf(norm.ppf(1 - alpha / 2) / math.sqrt(t))))
    raise ConfigError(f"unknown spending function '{kind}'; use one of: {', '.join(SPENDING_FUNCTIONS)}")


def z_boundaries(fractions: Sequence[float], alpha_side: float, kind: str = "pocock") -> list[float]:
    """One-sided z boundaries ``b_k`` at information fractions ``t_1 < … < t_K = 1`` such that the probability
    of crossing above at look k (not before) under the null is the error spent between ``t_{k−1}`` and ``t_k``."""
    return list(_z_boundaries(tuple(float(t) for t in fractions), float(alpha_side), kind))


@lru_cache(maxsize=64)
def _z_boundaries(fractions: tuple[float, ...], alpha_side: float, kind: str) -> tuple[float, ...]:
    import numpy as np
    from scipy.optimize import brentq
    from scipy.stats import norm

    ts = [float(t) for t in fractions]
    if not ts or any(b <= a for a, b in zip(ts, ts[1:])) or ts[0] <= 0 or ts[-1] > 1 + 1e-12:
        raise ConfigError(f"information fractions must increase within (0, 1], got {ts}")
    grid = np.linspace(-8.0, 8.0, 1601)
    h = grid[1] - grid[0]
    density: Any = None  # sub-density of S_{k-1} on the continuation region, on `grid`
    bounds: list[float] = []
    prev_t, prev_spent = 0.0, 0.0
    for t in ts:
        target = spent(t, alpha_side, kind) - prev_spent
        dt = t - prev_t
        if density is None:
            def cross(b: float) -> float:
                return float(norm.sf(b))
        else:
            def cross(b: float) -> float:
                return float((density * norm.sf((b * math.sqrt(t) - grid) / math.sqrt(dt))).sum() * h)
        if target <= 1e-15:
            b = 12.0
        else:
            hi = 12.0
            b = brentq(lambda v: cross(v) - target, -3.0, hi) if cross(hi) < target < cross(-3.0) else hi
        bounds.append(float(b))
        # propagate the continuation density to t
        if density is None:
            new = norm.pdf(grid / math.sqrt(t)) / math.sqrt(t)
        else:
            kernel = norm.pdf((grid[:, None] - grid[None, :]) / math.sqrt(dt)) / math.sqrt(dt)
            new = kernel @ density * h
        new = np.where(grid < b * math.sqrt(t), new, 0.0)
        density, prev_t, prev_spent = new, t, spent(t, alpha_side, kind)
    return tuple(bounds)


@dataclass
class SequentialDesign:
    """The planned looks (items judged before each) and their z boundaries."""

    n_max: int
    looks: list[int]
    alpha: float
    spending: str
    boundaries: list[float]
    #: conditional power below which a look stops as inconclusive (0 = never), from ``futility_from`` of n_max on
    futility: float = 0.02
    futility_from: float = 0.5

    @classmethod
    def plan(cls, n_max: int, *, round_fraction: float = 0.05, alpha: float = 0.05, spending: str = "pocock",
             min_items: int = 1, futility: float = 0.02) -> "SequentialDesign":
        """Looks every ``round_fraction`` of ``n_max`` (rounded up), from the first with at least ``min_items``
        items (a look below the gate's minimum could not decide, so no error is spent on it)."""
        if isinstance(n_max, bool) or not isinstance(n_max, int) or n_max < 1:
            raise ConfigError(f"sequential gate: n_max must be a whole number >= 1, got {n_max!r}")
        if not 0 < round_fraction <= 1:
            raise ConfigError(f"sequential.round must be in (0, 1] (a fraction of the prompt set), got {round_fraction}")
        if not 0 < alpha < 1:
            raise ConfigError(f"sequential.alpha must be in (0, 1), got {alpha}")
        step = max(1, math.ceil(round_fraction * n_max))
        looks = sorted({min(n_max, k) for k in range(step, n_max + step, step)})
        looks = [n for n in looks if n >= min(min_items, n_max)]  # a look that cannot decide spends nothing
        if spending not in SPENDING_FUNCTIONS:
            raise ConfigError(f"unknown spending function '{spending}'; use one of: {', '.join(SPENDING_FUNCTIONS)}")
        bounds = z_boundaries([n / n_max for n in looks], alpha / 2, spending)
        if not 0 <= futility < 0.5:
            raise ConfigError(f"sequential.futility must be in [0, 0.5) (a conditional power), got {futility}")
        return cls(n_max=n_max, looks=looks, alpha=alpha, spending=spending, boundaries=bounds, futility=futility)

    def conditional_power(self, k: int, mean: Any, sd: Any, threshold: float) -> Any:
        """The chance that the final look decides (either way) if the rest of the items behave like the ones so
        far: the B-value ``B(t) = z √t`` plus a drift ``(mean − θ)/sd · √n_max`` over the remaining ``1 − t``."""
        import numpy as np
        from scipy.stats import norm

        t = self.looks[k] / self.n_max
        if t >= 1:
            return np.ones_like(np.asarray(mean, dtype=float))
        drift = (np.asarray(mean) - threshold) / np.asarray(sd) * math.sqrt(self.n_max)
        b_now = drift * t  # z·√t with z = (mean − θ)/(sd/√n_k) and n_k = t·n_max
        final = self.boundaries[-1]
        rest = math.sqrt(1 - t)
        return (norm.sf((final - b_now - drift * (1 - t)) / rest)
                + norm.cdf((-final - b_now - drift * (1 - t)) / rest))

    def futile(self, k: int) -> bool:
        """Whether look ``k`` may stop for futility (not the last look; from ``futility_from`` on)."""
        return self.futility > 0 and k < len(self.looks) - 1 and self.looks[k] >= self.futility_from * self.n_max

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Look:
    """One look of the sequential gate."""

    round: int
    n_judged: int
    n: int
    failures: int
    value: float | None
    boundary_z: float
    boundary: float | None
    ci_low: float | None
    ci_high: float | None
    decision: LookDecision
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def look_boundary(z: float, n: int) -> float:
    """The boundary a look applies to ``(mean − θ)/SE``: the design's z (no look below 3 items). A t quantile
    (``n − 1`` df) was measured as an alternative: it moved the wrong-verdict rate at the threshold from 0.030 to
    0.027 per side (the fixed gate's own rate at n = 250 is 0.030: Bernoulli discreteness) and cost 2 points of
    judge calls saved, so the z boundary is kept."""
    if n < 3:
        return float("inf")
    return float(z)


def evaluate_look(design: SequentialDesign, k: int, scored: Sequence[float], *, failures: int, n_judged: int,
                  threshold: float, min_items: int, max_failure_rate: float) -> Look:
    """The decision at look ``k`` (0-based) from the scored outcomes so far (see the module docstring)."""
    import numpy as np

    from sami_toolkit.evaluation.stats.proportions import agresti_coull_variance

    x = np.asarray(list(scored), dtype=float)
    n = int(x.size)
    final = k == len(design.looks) - 1
    bz = design.boundaries[k]
    base = dict(round=k + 1, n_judged=n_judged, n=n, failures=failures, boundary_z=bz)
    if n_judged and failures / n_judged > max_failure_rate and n_judged >= min(min_items, design.n_max):
        return Look(**base, value=None, boundary=None, ci_low=None, ci_high=None, decision="error",
                    reason=f"{failures} of {n_judged} judgments failed ({failures / n_judged:.0%}), above "
                           f"max_failure_rate {max_failure_rate:.0%}")
    if n == 0:
        return Look(**base, value=None, boundary=None, ci_low=None, ci_high=None,
                    decision="inconclusive" if final else "continue", reason="no scored items yet")
    mean = float(x.mean())
    var = float(x.var(ddof=1)) if n > 1 else 0.0
    if not var > 0:
        var = agresti_coull_variance(mean, n)
    se = math.sqrt(var / n)
    b = look_boundary(bz, n)
    lo, hi = max(0.0, mean - b * se), min(1.0, mean + b * se)
    look = Look(**base, value=mean, boundary=b, ci_low=lo, ci_high=hi, decision="continue")
    if n < min_items:
        look.reason = f"{n} scored item(s), fewer than min_items {min_items}"
    elif lo > threshold:
        look.decision, look.reason = "pass", f"repeated 95% CI lower bound {lo:.3f} > {threshold:.3f}"
    elif hi < threshold:
        look.decision, look.reason = "fail", f"repeated 95% CI upper bound {hi:.3f} < {threshold:.3f}: regression"
    else:
        look.reason = f"repeated 95% CI [{lo:.3f}, {hi:.3f}] contains {threshold:.3f}"
        if design.futile(k) and n >= min_items:
            power = float(design.conditional_power(k, mean, math.sqrt(var), threshold))
            if power < design.futility:
                look.decision = "inconclusive"
                look.reason += (f"; futility: the final look would decide with probability {power:.1%} < "
                                f"{design.futility:.0%}, so judging stops (more prompts or a wider margin needed)")
    if final and look.decision == "continue":
        look.decision = "inconclusive"
        look.reason += ("" if n < min_items else "; every item judged, more prompts needed to decide")
    return look


@dataclass
class SimulationRow:
    """Error rates and judge calls of the sequential and fixed-n gates at one true rate (``simulate``)."""

    true_rate: float
    tie_rate: float
    n_max: int
    reps: int
    seq_pass: float
    seq_fail: float
    seq_mean_n: float
    fixed_pass: float
    fixed_fail: float
    calls_saved: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def simulate(design: SequentialDesign, true_rate: float, *, tie_rate: float = 0.0, margin: float = 0.0,
             reps: int = 2000, seed: int = 0, min_items: int = 20) -> SimulationRow:
    """Seeded Monte Carlo of the sequential gate against the fixed-n gate (the 95% CI of spec §8.5 at n_max) on
    i.i.d. outcomes: a tie with probability ``tie_rate``, else a win or a loss with mean ``true_rate`` (wins
    ``true_rate − tie_rate/2``). Vectorised over replicates: the same boundaries and statistic as
    :func:`evaluate_look`."""
    import numpy as np

    from sami_toolkit.evaluation.stats.proportions import Z95

    p_win = true_rate - tie_rate / 2
    if not (0 <= p_win <= 1 and 0 <= tie_rate <= 1 and p_win + tie_rate <= 1 + 1e-12):
        raise ConfigError(f"impossible outcome model: rate {true_rate}, tie rate {tie_rate}")
    rng = np.random.default_rng(seed)
    u = rng.random((reps, design.n_max))
    x = np.where(u < p_win, 1.0, np.where(u < p_win + tie_rate, 0.5, 0.0))
    threshold = 0.5 - margin
    cs, cs2 = np.cumsum(x, 1), np.cumsum(x * x, 1)
    decision = np.zeros(reps, dtype=int)
    stop = np.full(reps, design.n_max)
    open_ = np.ones(reps, dtype=bool)
    for k, n in enumerate(design.looks):
        if n < min_items and n < design.n_max:
            continue
        mean = cs[:, n - 1] / n
        var = (cs2[:, n - 1] - n * mean * mean) / max(n - 1, 1)
        centre = (n * mean + Z95 * Z95 / 2) / (n + Z95 * Z95)
        var = np.where(var > 1e-12, var, centre * (1 - centre))
        b = look_boundary(design.boundaries[k], n)
        half = b * np.sqrt(var / n)
        up = open_ & (mean - half > threshold)
        down = open_ & (mean + half < threshold)
        decision[up], decision[down] = 1, -1
        stop[up | down] = n
        open_ &= ~(up | down)
        if design.futile(k):
            futile = open_ & (design.conditional_power(k, mean, np.sqrt(var), threshold) < design.futility)
            stop[futile] = n
            open_ &= ~futile
    m = cs[:, -1] / design.n_max
    se = np.sqrt(np.maximum(m * (1 - m), 0) / design.n_max)
    fixed_pass = float((m - Z95 * se > threshold).mean())
    fixed_fail = float((m + Z95 * se < threshold).mean())
    mean_n = float(stop.mean())
    return SimulationRow(true_rate=true_rate, tie_rate=tie_rate, n_max=design.n_max, reps=reps,
                         seq_pass=float((decision == 1).mean()), seq_fail=float((decision == -1).mean()),
                         seq_mean_n=mean_n, fixed_pass=fixed_pass, fixed_fail=fixed_fail,
                         calls_saved=1 - mean_n / design.n_max)


def wrong_rates(row: SimulationRow, *, margin: float = 0.0) -> tuple[float, float]:
    """``(wrong pass, wrong regression)`` of the sequential gate at the row's true rate: a pass is wrong when the
    true rate is at or below ``0.5 − margin``, a regression when it is at or above."""
    threshold = 0.5 - margin
    wrong_pass = row.seq_pass if row.true_rate <= threshold + 1e-12 else 0.0
    wrong_fail = row.seq_fail if row.true_rate >= threshold - 1e-12 else 0.0
    return wrong_pass, wrong_fail
