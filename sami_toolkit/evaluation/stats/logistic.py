"""The logistic GLM behind the length-corrected win rates: a vectorised Newton/IRLS fit, the tanh length feature,
and the (label, x) cells that make the bootstrap cheap.

Every statistic depends on an item only through its (outcome, Δℓ) cell, so the GLM is fitted on distinct cells
with counts, and a bootstrap replicate is a row of multinomial counts over the same cells: all replicates' fits
advance together on a ``[B, cells]`` count matrix.  numpy is imported inside the functions.
"""

from __future__ import annotations

from typing import Any


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


def intercept_se(x: Any, counts: Any, beta: Any) -> float:
    """Standard error of the intercept b0 of a fitted ``σ(b0 + b1·x)``: ``sqrt([I⁻¹]₀₀)`` with the observed
    (= expected, for the logit link) information ``I = Σ c·μ(1−μ)·[1, x]ᵀ[1, x]`` at ``beta`` (shape ``[2]``).

    This is the fit's own uncertainty (issue 14 §1): it grows with the collinearity of the intercept and the
    length feature and explodes near separation, where a binomial ``p(1−p)/n`` of the fitted rate would shrink to
    nothing. With no length variation (``det ≈ 0``) the model is intercept-only and ``I₀₀⁻¹`` is used."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    c = np.asarray(counts, dtype=float)
    mu = 1.0 / (1.0 + np.exp(-np.clip(beta[0] + beta[1] * x, -35, 35)))
    w = c * mu * (1 - mu)
    h00, h01, h11 = float(w.sum()), float((w * x).sum()), float((w * x * x).sum())
    if not h00 > 0:
        return float("inf")
    det = h00 * h11 - h01 * h01
    if det > 1e-9 * h00 * h11:
        return float(np.sqrt(h11 / det))
    return float(np.sqrt(1.0 / h00))


def sigmoid(z: Any) -> Any:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


def length_feature(delta: Any) -> Any:
    """``tanh(Δℓ / sd(Δℓ))`` (AlpacaEval's standardisation: no centring; sd with ddof = 1)."""
    import numpy as np

    sd = float(np.std(delta, ddof=1)) if len(delta) > 1 else 0.0
    if not sd > 0:
        return np.zeros_like(np.asarray(delta, dtype=float))
    return np.tanh(np.asarray(delta, dtype=float) / sd)


def cells(labels: Any, x: Any) -> tuple[Any, Any, Any]:
    """Distinct (label, x) cells and their counts: the sufficient statistic for the GLM and its bootstrap."""
    import numpy as np

    pairs = np.stack([x, labels], axis=1)  # sorted by x first: cells sharing an x are contiguous
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    return uniq[:, 1], uniq[:, 0], counts.astype(float)
