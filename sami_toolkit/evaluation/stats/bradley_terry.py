"""Bradley–Terry ranking of several candidates judged against one baseline (``eval history``, issue 18 §5), with
bootstrap intervals on the strengths and the ranks.

Model: ``P(i beats j) = π_i / (π_i + π_j)``, fitted by the minorisation–maximisation algorithm (Hunter 2004) on a
win matrix where a tie counts half a win each way. The baseline's strength is fixed at 1 (log-strength 0), so a
candidate's log-strength is on the logit scale of "beats the baseline". With every candidate compared only with the
baseline the fit reduces to ``logit(win rate)`` per candidate, and the ranking's value is its **intervals**: the
bootstrap resamples each candidate's items (or, where the candidates answered the same prompts, the prompts
jointly), refits, and reports the percentile interval of each log-strength and of each rank.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence


def fit_bradley_terry(wins: Any, *, max_iter: int = 2000, tol: float = 1e-10, eps: float = 0.5) -> Any:
    """Log-strengths from ``wins[i, j]`` (times i beat j; ties as 0.5 each way), player 0 fixed at 0. ``eps``
    pseudo-wins each way (a weak prior) keep an unbeaten or winless player finite."""
    import numpy as np

    w = np.asarray(wins, dtype=float).copy()
    k = w.shape[0]
    games = w + w.T
    w = w + eps * (games > 0)
    games = w + w.T
    pi = np.ones(k)
    total = w.sum(axis=1)
    for _ in range(max_iter):
        denom = (games / (pi[:, None] + pi[None, :])).sum(axis=1)
        new = np.where(denom > 0, total / np.where(denom > 0, denom, 1), pi)
        new = new / new[0]
        if np.max(np.abs(np.log(new) - np.log(pi))) < tol:
            pi = new
            break
        pi = new
    return np.log(pi)


@dataclass
class Ranking:
    """One candidate's place."""

    name: str
    log_strength: float
    ci_low: float
    ci_high: float
    rank: int
    rank_low: int
    rank_high: int
    win_rate_vs_baseline: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank_against_baseline(outcomes: Mapping[str, Sequence[float]], *, bootstrap: int = 1000, seed: int = 0,
                          paired: bool = False) -> list[Ranking]:
    """Rank candidates from their per-item outcomes against one baseline (1 / 0.5 / 0; failed items left out
    by the caller). ``paired``: every candidate's outcomes are aligned on the same prompts, so the bootstrap
    resamples prompts jointly (the ranks' intervals then account for the shared prompt difficulty)."""
    import numpy as np

    names = list(outcomes)
    arrays = [np.asarray(outcomes[name], dtype=float) for name in names]
    rng = np.random.default_rng(seed)

    def strengths(samples: Sequence[Any]) -> Any:
        # every game is against the baseline (a star): the MLE of fit_bradley_terry in closed form, same prior
        wins = np.array([x.sum() for x in samples], dtype=float)
        losses = np.array([len(x) for x in samples], dtype=float) - wins
        return np.log((wins + 0.5) / (losses + 0.5))

    point = strengths(arrays)
    boots = np.empty((bootstrap, len(names)))
    for b in range(bootstrap):
        if paired and len({len(a) for a in arrays}) == 1:
            idx = rng.integers(0, len(arrays[0]), len(arrays[0]))
            sample = [a[idx] for a in arrays]
        else:
            sample = [a[rng.integers(0, len(a), len(a))] for a in arrays]
        boots[b] = strengths(sample)
    order = np.argsort(-point)
    ranks = np.empty(len(names), dtype=int)
    ranks[order] = np.arange(1, len(names) + 1)
    boot_ranks = (-boots).argsort(axis=1).argsort(axis=1) + 1
    out = []
    for i, name in enumerate(names):
        lo, hi = np.quantile(boots[:, i], [0.025, 0.975]) if bootstrap else (point[i], point[i])
        rlo, rhi = np.quantile(boot_ranks[:, i], [0.025, 0.975]) if bootstrap else (ranks[i], ranks[i])
        out.append(Ranking(name=name, log_strength=float(point[i]), ci_low=float(lo), ci_high=float(hi),
                           rank=int(ranks[i]), rank_low=int(round(rlo)), rank_high=int(round(rhi)),
                           win_rate_vs_baseline=float(arrays[i].mean()) if len(arrays[i]) else float("nan"),
                           n=int(len(arrays[i]))))
    return sorted(out, key=lambda r: r.rank)
