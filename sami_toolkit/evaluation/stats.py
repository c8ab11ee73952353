"""Win-rate statistics: raw rate with a tie policy, the paper's two length corrections, an AlpacaEval-style
length-controlled GLM with a bootstrap CI, judge health, and the CI gate decision.

Why each number exists (spec §8.4–§8.5, anchors-eval §3, §8):

* ``win_rate`` — mean per-item outcome under the **tie policy** (spec §8.4b: ``half`` = 0.5, ``loss`` = 0,
  ``drop`` = remove tied items). Failed judgments (``outcome: null``) are counted in ``failures`` and never
  enter any rate (the paper's files stored them as 0.5; we do not).
* ``sem`` / ``ci_low`` / ``ci_high`` / ``t`` / ``p_value`` — spec §8.5 exactly: ``SE = sqrt(p(1-p)/n)``,
  ``p ± 1.96·SE``, ``t = (p-0.5)/SE`` and a two-sided p from the t distribution (df = n−1). For outcomes in
  [0, 1] with mean p the per-item variance is at most p(1−p), so with ties this SE is conservative. When the
  rate is exactly 0 or 1 the normal interval collapses to a point, so the Wilson interval is used instead.
* ``balanced_win_rate`` — Figure 2b (spec §8.4): ties = 0.5, items split into test-longer vs shorter-or-equal,
  the unweighted mean of the two stratum means. Its SEM is the stratified ``½·sqrt(v_L/n_L + v_S/n_S)``.
* ``logistic_win_rate`` — Tables 2–3 reconstruction (spec §8.4): binary [test wins] (ties = 0), unregularised
  logistic regression on intercept + ``tanh(Δℓ/sd(Δℓ))``, reported as σ(intercept). CI/t as in spec §8.5.
* ``lc_win_rate`` — AlpacaEval-2-style length control fitted on this run's own items (anchors-eval §3.6,
  "minimal" variant without instruction difficulty): soft labels under the tie policy, the same tanh length
  feature, a weak Gaussian prior (L2 = ``LC_L2``) so a one-sided run stays finite, LC = σ(θ). Its CI is a
  percentile bootstrap over items that **refits the GLM** on every replicate (AlpacaEval's own ``lc_standard_error``
  ignores parameter uncertainty, anchors-eval §3.5).

The bootstrap is exact and fast: every statistic depends on an item only through its (outcome, Δℓ) cell, so
resampling n items with replacement equals drawing multinomial counts over the distinct cells. With integer token
lengths there are few cells even for 100,000 items, and all replicates' GLMs are fitted together by a vectorised
Newton/IRLS on a ``[B, cells]`` count matrix.

Only numpy/scipy are used, imported inside functions (the CLI imports this module lazily anyway).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

from sami_toolkit.core.errors import ConfigError

TiePolicy = Literal["half", "loss", "drop"]
TIE_POLICIES: tuple[str, ...] = ("half", "loss", "drop")
Metric = Literal["win_rate", "lc_win_rate", "balanced_win_rate"]
GATE_METRICS: tuple[str, ...] = ("win_rate", "lc_win_rate", "balanced_win_rate")

#: z for a two-sided 95% interval (spec §8.5 uses 1.96)
Z95 = 1.96
#: L2 penalty of the lc_win_rate GLM (a N(0, 1/LC_L2) prior on θ and φ): negligible at n ≥ 50, keeps a
#: one-sided run (all wins) finite
LC_L2 = 0.01
DEFAULT_BOOTSTRAP = 1000


# ------------------------------------------------------------------------------------------------ input
@dataclass
class Items:
    """Per-item outcomes and token lengths. ``outcome`` is 1 / 0 / 0.5 or ``None`` (failed judgment)."""

    outcome: list[float | None]
    len_test: list[float | None]
    len_baseline: list[float | None]
    position: list[str | None] = field(default_factory=list)
    verdicts: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.outcome)


_OUTCOME_VALUES = {1.0, 0.0, 0.5}


def _parse_outcome(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) not in _OUTCOME_VALUES:
        raise ConfigError(f"{where}: 'outcome' must be 1, 0, 0.5 or null (failed), got {value!r}")
    return float(value)


def _parse_length(value: Any, key: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}: '{key}' must be a non-negative token count, got {value!r}")
    return float(value)


def items_from_records(records: Iterable[Mapping[str, Any]], *, source: str = "input") -> Items:
    """Build :class:`Items` from dicts with ``outcome`` and optional ``len_test`` / ``len_baseline`` (the
    paper-results format and sami-kit's own judgment files, where a failed item has ``outcome: null``)."""
    out = Items([], [], [], [], [])
    for i, rec in enumerate(records, start=1):
        where = f"{source}: line {i}"
        if not isinstance(rec, Mapping):
            raise ConfigError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        if "outcome" not in rec:
            raise ConfigError(f"{where}: missing 'outcome' (1 = test wins, 0 = baseline wins, 0.5 = tie, "
                              "null = failed)")
        outcome = _parse_outcome(rec["outcome"], where)
        if outcome is not None and rec.get("failed"):
            outcome = None
        out.outcome.append(outcome)
        out.len_test.append(_parse_length(rec.get("len_test"), "len_test", where))
        out.len_baseline.append(_parse_length(rec.get("len_baseline"), "len_baseline", where))
        pos = rec.get("candidate_position")
        out.position.append(pos if pos in ("A", "B") else None)
        verdicts = rec.get("verdicts")
        out.verdicts.append([str(v) for v in verdicts] if isinstance(verdicts, list) else [])
    return out


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file; a bad line is a ConfigError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:  # one parse for the whole file is several times faster than one json.loads per line
        parsed = json.loads("[" + ",".join(lines) + "]")
        if len(parsed) == len(lines):  # else some line held two values: find it line by line below
            return parsed
    except json.JSONDecodeError:
        pass
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
    return records


def load_items(path: str | Path) -> Items:
    """Read a judgment JSONL file into :class:`Items` (errors name the file and line)."""
    items = items_from_records(read_jsonl(path), source=str(path))
    if len(items) == 0:
        raise ConfigError(f"{path}: no judgments in the file")
    return items


# ------------------------------------------------------------------------------------------ small helpers
def tie_values(ties: str) -> float | None:
    """The value a tie counts as under ``ties`` (``None`` = dropped)."""
    if ties not in TIE_POLICIES:
        raise ConfigError(f"unknown tie policy '{ties}'; use one of: {', '.join(TIE_POLICIES)}")
    return {"half": 0.5, "loss": 0.0, "drop": None}[ties]


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (anchors-eval §8): used when p is 0 or 1 and the normal interval degenerates."""
    if n <= 0:
        return (0.0, 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


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


# ---------------------------------------------------------------------------------------- logistic GLM
def fit_logistic(x: Any, y: Any, counts: Any, *, l2: float = 0.0, max_iter: int = 50,
                 tol: float = 1e-10, start: Any = None, successes: Any = None) -> tuple[Any, Any]:
    """Vectorised Newton/IRLS for ``P(y=1) = σ(b0 + b1·x)`` with soft labels ``y ∈ [0, 1]``.

    ``x`` and ``y`` have shape ``[K]`` (distinct cells); ``counts`` is ``[K]`` or ``[B, K]`` (one row per
    bootstrap replicate). Returns ``(beta [B, 2], converged [B])``. Two parameters means the Hessian is 2×2 and
    is inverted in closed form, so all B fits advance together. ``l2`` adds ``l2/2·|β|²`` to the negative
    log-likelihood. Divergence (complete separation without a penalty) shows as ``converged = False``.
    ``start`` (shape ``[2]``) warm-starts every fit, e.g. bootstrap replicates from the full-data estimate.
    ``successes`` (same shape as ``counts``) replaces ``counts * y``: with it, cells that share an ``x`` but
    differ in label can be merged (``y`` is then ignored), which shrinks the work per Newton step.
    """
    import numpy as np

    c = np.atleast_2d(np.asarray(counts, dtype=float))
    x = np.asarray(x, dtype=float)
    y = None if y is None else np.asarray(y, dtype=float)
    B = c.shape[0]
    beta = np.zeros((B, 2)) if start is None else np.tile(np.asarray(start, dtype=float), (B, 1))
    converged = np.zeros(B, dtype=bool)
    cy = np.atleast_2d(np.asarray(successes, dtype=float)) if successes is not None else c * y
    x2 = x * x
    for _ in range(max_iter):
        eta = beta[:, :1] + beta[:, 1:] * x
        mu = 1.0 / (1.0 + np.exp(-np.clip(eta, -35, 35)))
        r = cy - c * mu
        w = c * mu * (1 - mu)
        g0 = r.sum(1) - l2 * beta[:, 0]
        g1 = (r * x).sum(1) - l2 * beta[:, 1]
        h00 = w.sum(1) + l2
        h01 = (w * x).sum(1)
        h11 = (w * x2).sum(1) + l2
        det = h00 * h11 - h01 * h01
        full = det > 1e-9 * np.maximum(h00 * h11, 1e-300)
        # no length variation (x constant at 0): the model is intercept-only, step on b0 alone
        ok = full | (h00 > 1e-300)
        det = np.where(full, det, 1.0)
        d0 = np.where(full, (h11 * g0 - h01 * g1) / det, np.where(ok, g0 / np.where(h00 > 0, h00, 1.0), 0.0))
        d1 = np.where(full, (h00 * g1 - h01 * g0) / det, 0.0)
        beta[:, 0] += d0
        beta[:, 1] += d1
        step = np.maximum(np.abs(d0), np.abs(d1))
        converged = ok & (step < tol ** 0.5)
        if np.all(converged | ~ok) or np.any(np.abs(beta) > 60):
            break
    # |β| ≥ 15 means fitted probabilities within 3e-7 of 0 or 1: (quasi-)complete separation, where the MLE
    # does not exist and Newton only creeps outwards; report it as not converged rather than a rate of ~0 or ~1
    finite = np.all(np.abs(beta) < 15, axis=1)
    return beta, converged & finite


def _sigmoid(z: Any) -> Any:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


# ------------------------------------------------------------------------------------------------ core
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
    lc_win_rate: float | None = None
    lc_sem: float | None = None
    lc_ci_low: float | None = None
    lc_ci_high: float | None = None
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
        raise ConfigError(f"unknown metric '{name}'; use one of: {', '.join(GATE_METRICS)}")


def compute_stats(items: Items, *, ties: str = "half", bootstrap: int = DEFAULT_BOOTSTRAP,
                  seed: int = 0) -> WinRateStats:
    """All statistics for one set of judged items (see the module docstring for each definition)."""
    import numpy as np

    tie_value = tie_values(ties)
    if bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {bootstrap}")
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
        _balanced(result, o_l, delta)
        _logistic(result, o_l, delta)
        lc_labels = np.where(o_l == 0.5, tie_value if tie_value is not None else 0.5, o_l)
        _lc_glm(result, lc_labels, delta, bootstrap=bootstrap, seed=seed)

    # ----- bootstrap CI of the raw rate (reported beside the analytic one; cells = distinct outcome values)
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        vals, cnt = np.unique(scored, return_counts=True)
        draws = rng.multinomial(n, cnt / n, size=bootstrap)
        boot = draws @ vals / n
        result.bootstrap_ci_low, result.bootstrap_ci_high = (float(v) for v in np.quantile(boot, [0.025, 0.975]))
    return result


def _balanced(result: WinRateStats, o: Any, delta: Any) -> None:
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
    var_l = float(w[longer].var(ddof=1)) if n_l > 1 else m_l * (1 - m_l)
    var_s = float(w[~longer].var(ddof=1)) if n_s > 1 else m_s * (1 - m_s)
    se = 0.5 * math.sqrt(var_l / n_l + var_s / n_s)
    result.balanced_win_rate = value
    result.balanced_sem = se
    if se > 0:
        result.balanced_ci_low = max(0.0, value - Z95 * se)
        result.balanced_ci_high = min(1.0, value + Z95 * se)
    else:
        result.balanced_ci_low, result.balanced_ci_high = wilson_interval(value, n_l + n_s)


def length_feature(delta: Any) -> Any:
    """``tanh(Δℓ / sd(Δℓ))`` (AlpacaEval's standardisation: no centring; sd with ddof = 1)."""
    import numpy as np

    sd = float(np.std(delta, ddof=1)) if len(delta) > 1 else 0.0
    if not sd > 0:
        return np.zeros_like(np.asarray(delta, dtype=float))
    return np.tanh(np.asarray(delta, dtype=float) / sd)


def _cells(labels: Any, x: Any) -> tuple[Any, Any, Any]:
    """Distinct (label, x) cells and their counts: the sufficient statistic for the GLM and its bootstrap."""
    import numpy as np

    pairs = np.stack([x, labels], axis=1)  # sorted by x first: cells sharing an x are contiguous
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    return uniq[:, 1], uniq[:, 0], counts.astype(float)


def _logistic(result: WinRateStats, o: Any, delta: Any) -> None:
    """Tables 2–3 reconstruction (spec §8.4): [test wins] (ties = 0) ~ 1 + tanh(Δℓ/sd), unregularised."""
    import numpy as np

    y = (o == 1.0).astype(float)
    n = len(y)
    if y.min() == y.max():
        result.notes.append("logistic win rate undefined: every item has the same binary outcome "
                            "(the unregularised fit diverges)")
        return
    ly, lx, lc = _cells(y, length_feature(delta))
    beta, ok = fit_logistic(lx, ly, lc)
    if not ok[0]:
        result.notes.append("logistic win rate undefined: the length model is separable (fit diverged)")
        return
    value = float(_sigmoid(beta[0, 0]))
    summary = proportion_summary(value, n)
    result.logistic_win_rate = value
    result.logistic_sem, result.logistic_ci_low, result.logistic_ci_high = (
        summary["sem"], summary["ci_low"], summary["ci_high"])
    result.logistic_t, result.logistic_p_value = summary["t"], summary["p_value"]


def _lc_glm(result: WinRateStats, labels: Any, delta: Any, *, bootstrap: int, seed: int) -> None:
    """AlpacaEval-style LC on this run's items with a refitting percentile bootstrap (anchors-eval §3.6)."""
    import numpy as np

    x = length_feature(delta)
    cy, cx, cc = _cells(labels, x)
    beta, ok = fit_logistic(cx, cy, cc, l2=LC_L2)
    if not ok[0]:
        result.notes.append("lc win rate: the GLM did not converge")
        return
    result.lc_win_rate = float(_sigmoid(beta[0, 0]))
    result.length_coefficient = float(beta[0, 1])
    if bootstrap <= 0:
        result.notes.append("lc win rate CI needs the bootstrap (--bootstrap > 0)")
        return
    n = int(cc.sum())
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
        b, conv = fit_logistic(ux, None, totals, successes=wins, l2=LC_L2, start=beta[0], tol=1e-12)
        rates.append(np.where(conv, _sigmoid(b[:, 0]), np.nan))
    boot = np.concatenate(rates)
    good = boot[~np.isnan(boot)]
    if len(good) < len(boot):
        result.notes.append(f"{len(boot) - len(good)} bootstrap replicate(s) of the LC GLM did not converge")
    if len(good):
        result.lc_sem = float(good.std(ddof=1)) if len(good) > 1 else 0.0
        result.lc_ci_low, result.lc_ci_high = (float(v) for v in np.quantile(good, [0.025, 0.975]))


# --------------------------------------------------------------------------------------------- judge health
def judge_health(items: Items, *, judge_model: str | None = None, candidate_model: str | None = None,
                 baseline_model: str | None = None) -> dict[str, Any]:
    """Diagnostics that reveal a bad judge (anchors-eval §9): failure rate, first-position (slot A) win rate,
    position consistency when both orders were judged, tie rate, and a shared-model-family warning."""
    n = len(items)
    failures = sum(1 for o in items.outcome if o is None)
    health: dict[str, Any] = {"n": n, "failures": failures, "failure_rate": failures / n if n else 0.0,
                              "tie_rate": (sum(1 for o in items.outcome if o == 0.5) / n) if n else 0.0,
                              "first_position_rate": None, "first_position_n": 0,
                              "position_consistency": None, "position_consistency_n": 0, "warnings": []}
    # first-position rate: over every decisive single-order verdict, how often slot A won
    a_wins = decisive = 0
    consistent = both = 0
    for pos, verdicts, outcome in zip(items.position, items.verdicts, items.outcome):
        if verdicts:
            for v in verdicts:
                if v in ("A", "B"):
                    decisive += 1
                    a_wins += v == "A"
            if len(verdicts) >= 2 and all(v in ("A", "B", "tie") for v in verdicts[:2]):
                both += 1
                # orders swap slots, so a position-independent winner means the letters differ
                consistent += (verdicts[0] != verdicts[1] and "tie" not in verdicts[:2]) or \
                              (verdicts[0] == verdicts[1] == "tie")
        elif pos in ("A", "B") and outcome in (0.0, 1.0):
            decisive += 1
            a_wins += (outcome == 1.0) == (pos == "A")
    if decisive:
        health["first_position_rate"] = a_wins / decisive
        health["first_position_n"] = decisive
    if both:
        health["position_consistency"] = consistent / both
        health["position_consistency_n"] = both
    if health["failure_rate"] > 0.05:
        health["warnings"].append(f"{failures} of {n} judgments failed ({health['failure_rate']:.1%})")
    rate = health["first_position_rate"]
    if rate is not None and decisive >= 20:
        se = math.sqrt(0.25 / decisive)
        if abs(rate - 0.5) > Z95 * se and abs(rate - 0.5) > 0.1:  # significant and large
            health["warnings"].append(f"position bias: slot A won {rate:.1%} of {decisive} decisive verdicts")
    family = shared_family(judge_model, candidate_model) or shared_family(judge_model, baseline_model)
    if family:
        health["warnings"].append(f"the judge ({judge_model}) shares the '{family}' model family with a compared "
                                  "model: self-preference bias is likely (use a judge from another family)")
    return health


#: name stems of model families (lower case), checked as substrings of the model names
FAMILIES: tuple[str, ...] = ("gpt", "claude", "llama", "mistral", "mixtral", "qwen", "gemma", "smollm", "phi",
                             "deepseek", "command", "gemini", "falcon", "olmo")
_FAMILY_GROUPS = {"mixtral": "mistral", "gemini": "gemma"}


def model_family(name: str | None) -> str | None:
    if not name:
        return None
    low = str(name).lower()
    # check longer stems first so "mixtral" is not read as something shorter
    for stem in sorted(FAMILIES, key=len, reverse=True):
        if stem in low:
            return _FAMILY_GROUPS.get(stem, stem)
    if low.startswith(("o1", "o3", "o4")):
        return "gpt"
    return None


def shared_family(a: str | None, b: str | None) -> str | None:
    """The family both model names belong to, or None."""
    fa, fb = model_family(a), model_family(b)
    return fa if fa is not None and fa == fb else None


# --------------------------------------------------------------------------------------------------- gate
Decision = Literal["pass", "fail", "inconclusive"]


@dataclass
class GateResult:
    """The CI gate on one metric (design §6): pass if CI low ≥ 0.5 − margin, fail if CI high < 0.5 − margin."""

    metric: str
    margin: float
    threshold: float
    value: float | None
    ci_low: float | None
    ci_high: float | None
    decision: Decision
    exit_code: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate(stats: WinRateStats, *, metric: str = "win_rate", margin: float = 0.0) -> GateResult:
    """Non-inferiority gate (anchors-eval §8.6): 0 pass, 1 regression, 3 inconclusive."""
    from sami_toolkit.core.errors import ExitCode

    if not 0 <= margin < 0.5:
        raise ConfigError(f"margin must be in [0, 0.5) (a fraction of win rate, e.g. 0.05), got {margin}")
    value, lo, hi = stats.metric(metric)
    threshold = 0.5 - margin
    if value is None or lo is None or hi is None:
        return GateResult(metric, margin, threshold, value, lo, hi, "inconclusive", int(ExitCode.INCONCLUSIVE),
                          f"{metric} has no confidence interval ({'; '.join(stats.notes) or 'no data'})")
    if lo >= threshold:
        return GateResult(metric, margin, threshold, value, lo, hi, "pass", int(ExitCode.OK),
                          f"95% CI lower bound {lo:.3f} >= {threshold:.3f}")
    if hi < threshold:
        return GateResult(metric, margin, threshold, value, lo, hi, "fail", int(ExitCode.GATE_FAILED),
                          f"95% CI upper bound {hi:.3f} < {threshold:.3f}: regression")
    return GateResult(metric, margin, threshold, value, lo, hi, "inconclusive", int(ExitCode.INCONCLUSIVE),
                      f"95% CI [{lo:.3f}, {hi:.3f}] contains {threshold:.3f}: more prompts needed to decide")


def mean_sem(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and SEM (std with ddof = 1 over √n; the figures' error bars, spec §8.5)."""
    import numpy as np

    arr = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))],
                     dtype=float)
    if arr.size == 0:
        return None, None
    sem = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else 0.0
    return float(arr.mean()), sem
