"""SAMI loss variants, mutual-information estimators and the token-level KL regulariser.

Everything here works on a score matrix ``S`` of shape ``[..., C, C]`` laid out as in spec §1.2:
**rows are constitutions k, columns are responses j**, ``S[..., k, j] = log p(y_j | x, c_k)``.  The leading
dimensions are queries (usually ``[B]``).  Scores come from :func:`sami_toolkit.training.scoring.score_matrix`.

The Loss components registered by :mod:`sami_toolkit.builtin.losses` (``sami``, ``sami-responses``,
``sami-constitutions``) are thin wrappers around :func:`sami_loss` in :mod:`sami_toolkit.builtin.loss_components`.

This module imports torch at the top: it is never imported by the CLI at start-up (``sami_toolkit.__init__``
loads it lazily on first use of ``sami_loss``/``infonce_mi``/``paper_mi``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Variant = Literal["both", "responses", "constitutions"]
Reduction = Literal["mean", "none"]

VARIANTS: tuple[str, ...] = ("both", "responses", "constitutions")


def _check_scores(scores: torch.Tensor, what: str = "scores") -> int:
    """Validate the ``[..., C, C]`` shape and return ``C`` (a clear ValueError instead of a shape traceback)."""
    if not isinstance(scores, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor of shape [..., C, C], got {type(scores).__name__}")
    if scores.ndim < 2:
        raise ValueError(f"{what} must have shape [..., C, C] (rows = constitutions, columns = responses); "
                         f"got shape {tuple(scores.shape)}")
    rows, cols = scores.shape[-2], scores.shape[-1]
    if rows != cols:
        raise ValueError(f"{what} must be square in its last two dimensions (C constitutions x C responses); "
                         f"got {rows} x {cols}")
    if cols < 2:
        raise ValueError(f"SAMI needs at least C = 2 constitutions/responses per query to contrast; got C = {cols}")
    if not scores.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor, got dtype {scores.dtype}")
    return cols


def _as_float(scores: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision inputs (bf16 logsumexp loses the differences the loss is made of); float64 stays."""
    return scores if scores.dtype == torch.float64 else scores.float()


def _reduce(per_query: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_query.mean()
    if reduction == "none":
        return per_query
    raise ValueError(f"unknown reduction '{reduction}'; use 'mean' or 'none'")


def _row_loss(scores: torch.Tensor) -> torch.Tensor:
    """L_row (spec §1.3): for each constitution k a softmax over the C responses, target = response k."""
    log_p = scores - torch.logsumexp(scores, dim=-1, keepdim=True)
    return -torch.diagonal(log_p, dim1=-2, dim2=-1).mean(dim=-1)


def _col_loss(scores: torch.Tensor) -> torch.Tensor:
    """L_col (spec §1.3): for each response j a softmax over the C constitutions, target = constitution j."""
    log_p = scores - torch.logsumexp(scores, dim=-2, keepdim=True)
    return -torch.diagonal(log_p, dim1=-2, dim2=-1).mean(dim=-1)


def sami_loss(scores: torch.Tensor, variant: Variant = "both", reduction: Reduction = "mean") -> torch.Tensor:
    """The SAMI InfoNCE loss over ``S`` of shape ``[..., C, C]`` (spec §1.3).

    * ``"responses"``: L_row, a row-wise softmax over responses with the diagonal as target;
    * ``"constitutions"``: L_col, a column-wise softmax over constitutions with the diagonal as target;
    * ``"both"`` (the paper's loss, Figure 6): ``(L_row + L_col) / 2``.

    Gradients flow through all C² entries (the diagonal and, through the normalisers, every off-diagonal entry).
    Computed in float32 for half-precision input (float64 input stays float64).  ``reduction="mean"`` averages
    over the leading (query) dimensions; ``"none"`` returns one loss per query (shape ``scores.shape[:-2]``).
    """
    _check_scores(scores)
    s = _as_float(scores)
    if variant == "both":
        per_query = 0.5 * (_row_loss(s) + _col_loss(s))
    elif variant == "responses":
        per_query = _row_loss(s)
    elif variant == "constitutions":
        per_query = _col_loss(s)
    else:
        raise ValueError(f"unknown SAMI loss variant '{variant}'; use one of: {', '.join(VARIANTS)}")
    return _reduce(per_query, reduction)


def infonce_mi(scores: torch.Tensor, variant: Variant = "both", reduction: Reduction = "mean") -> torch.Tensor:
    """The InfoNCE estimate ``log C - L`` (spec §1.3 "Relation to Eq. 2", §1.6, §10.1).

    With sum log-probs (``ScoringOptions(reduction="sum")``) the constitution-side variant is a valid lower
    bound on I(Y; C | x); it is always ≤ log C.  The two-sided and response-side variants additionally assume
    equal marginals P(y | x) (spec §1.5), so with real responses they are dominated by response length; spec §1.6
    recommends reporting ``variant="constitutions"`` as the headline MI number.
    """
    c = _check_scores(scores)
    return math.log(c) - sami_loss(scores, variant=variant, reduction=reduction)


def paper_mi(scores: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """The estimator the paper's figures report (spec §1.6), per query:

        MI(x) = (1/C) Σ_j [ S[j, j] − (1/C) Σ_k S[k, j] ]

    i.e. the score of each response under its own constitution minus the **arithmetic mean of its log-probs over
    all constitutions, including k = j**.  It is **not** a lower bound on mutual information and is not bounded by
    log C (the arithmetic mean of logs replaces InfoNCE's log-mean-exp, so it is ≥ the InfoNCE value; the paper
    reports 1.91 > ln 4).  Use :func:`infonce_mi` for a real bound.  The paper scores with sum log-probs.
    """
    _check_scores(scores)
    s = _as_float(scores)
    diag = torch.diagonal(s, dim1=-2, dim2=-1)  # [..., C]: S[j, j]
    column_mean = s.mean(dim=-2)  # [..., C]: (1/C) Σ_k S[k, j]
    return _reduce((diag - column_mean).mean(dim=-1), reduction)


def kl_response_tokens(policy_logits: torch.Tensor, reference_logits: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """Token-level full-vocabulary KL(p_θ || p_ref), averaged over **response tokens only** (spec §3).

    ``policy_logits`` and ``reference_logits`` have shape ``[..., V]`` and are aligned position by position (use
    ``score_matrix(..., return_logits=True)`` on both models with the same inputs); ``mask`` (shape ``[...]``,
    bool) marks the positions to average over — the scored response tokens.  Per position the KL is
    ``Σ_v p_θ(v) [log p_θ(v) − log p_ref(v)]``; gradients flow into ``policy_logits`` only.

    Deviation from the reference code (spec §10.17): [R]'s ``kl_divergence`` averages over *all* positions of the
    batch, prompt and padding included, which dilutes the regulariser with context tokens whose distribution the
    loss never moves directly.  Here only response tokens count.  (The paper's text describes a sequence-level KL
    on p(y | x, c); beta was 0 in every reported run.)
    """
    if policy_logits.shape != reference_logits.shape:
        raise ValueError(f"policy and reference logits must have the same shape; got {tuple(policy_logits.shape)} "
                         f"and {tuple(reference_logits.shape)} (score both models on the same inputs)")
    log_p = torch.log_softmax(policy_logits.float(), dim=-1)
    log_q = torch.log_softmax(reference_logits.detach().float(), dim=-1)
    per_token = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    if mask is None:
        return per_token.mean()
    if mask.shape != per_token.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the logits' positions "
                         f"{tuple(per_token.shape)}")
    mask = mask.to(per_token.device, torch.bool)
    count = mask.sum()
    if int(count) == 0:
        raise ValueError("kl_response_tokens: the mask selects no response token")
    return per_token.masked_fill(~mask, 0.0).sum() / count


def _token_kl(policy_logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """Per-position full-vocabulary KL(p_θ || p_ref) (``[...]`` from logits ``[..., V]``); gradients into the
    policy only."""
    if policy_logits.shape != reference_logits.shape:
        raise ValueError(f"policy and reference logits must have the same shape; got {tuple(policy_logits.shape)} "
                         f"and {tuple(reference_logits.shape)} (score both models on the same inputs)")
    log_p = torch.log_softmax(policy_logits.float(), dim=-1)
    log_q = torch.log_softmax(reference_logits.detach().float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def kl_sequence(policy_logits: torch.Tensor, reference_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sequence-level KL(p_θ(y | x, c) || p_ref(y | x, c)), the paper's regulariser (spec §3, §10.17), averaged
    over the C² (constitution, response) sequences.

    By the chain rule the KL of two autoregressive sequence distributions is the expected **sum** over positions
    of the token-level KLs; it is evaluated on the prefixes of the stored responses (the responses come from the
    sampling model, not from π_θ, so this is the chain-rule sum along the data, as in Stiennon et al.'s
    per-sample penalty).  ``mask [..., R]`` marks the scored response tokens of each sequence (``[B, C, C, R]``
    from ``score_matrix(..., return_logits=True)``)."""
    per_token = _token_kl(policy_logits, reference_logits)
    if mask.shape != per_token.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the logits' positions "
                         f"{tuple(per_token.shape)}")
    mask = mask.to(per_token.device, torch.bool)
    if int(mask.sum()) == 0:
        raise ValueError("kl_sequence: the mask selects no response token")
    return per_token.masked_fill(~mask, 0.0).sum(dim=-1).mean()


def kl_all_positions(policy_logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """The reference code's ``kl_divergence`` (spec §3, §10.17): the token-level KL averaged over **every**
    position of the ``[N, T, V]`` logits — prompt, response and padding, unmasked."""
    return _token_kl(policy_logits, reference_logits).mean()
