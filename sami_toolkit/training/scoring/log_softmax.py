"""Selective log-softmax: ``log_softmax(logits)[target]`` without a ``[positions × vocab]`` log_softmax tensor.

Scoring needs one log-prob per scored token, but a full log_softmax over a 50k–150k vocabulary is the largest
tensor of the whole step; gather − logsumexp with a fused backward keeps it to one ``[M, V]`` tensor.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch


def selective_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[target] as gather − logsumexp, in float32 (float64 stays float64), without a [M, V]
    log_softmax tensor.

    The backward is fused (:func:`_selective_log_softmax_function`): autograd's own backward of gather − logsumexp
    builds three [M, V] tensors (the softmax, a zero-filled scatter for the gather, their sum), the fused one
    builds one, in place.
    """
    return _selective_log_softmax_function().apply(logits, targets)


@functools.lru_cache(maxsize=None)
def _selective_log_softmax_function() -> Any:
    """The autograd Function behind :func:`selective_log_probs`, defined on first use (torch is imported late)."""
    import torch

    class SelectiveLogSoftmax(torch.autograd.Function):
        """y[m] = x[m, t_m] − logsumexp(x[m]); dy/dx[m] = onehot(t_m) − softmax(x[m])."""

        @staticmethod
        def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            x = logits if logits.dtype == torch.float64 else logits.float()  # at least float32
            lse = torch.logsumexp(x, dim=-1)
            ctx.save_for_backward(logits, targets, lse)
            return x.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
            logits, targets, lse = ctx.saved_tensors
            grad = grad.to(lse.dtype)
            # one new [M, V] tensor in lse's dtype (type promotion), then in place: softmax, times −g, plus onehot·g
            grad_logits = torch.sub(logits, lse.unsqueeze(-1)).exp_().mul_(-grad.unsqueeze(-1))
            grad_logits.scatter_add_(-1, targets.unsqueeze(-1), grad.unsqueeze(-1))
            return grad_logits.to(logits.dtype), None

    return SelectiveLogSoftmax
