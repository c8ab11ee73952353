"""What a caller asks of the scorer (:class:`ScoringOptions`) and what it gets back (:class:`ScoreOutput`).

Kept apart from the torch code: :class:`ScoringOptions` is part of the run config (``train.scoring``), which the
CLI validates at start-up, so this module imports only pydantic at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover
    import torch


class ScoringOptions(BaseModel):
    """How response log-probs are computed and reduced (spec §1.4)."""

    model_config = ConfigDict(extra="forbid")

    reduction: Literal["mean", "sum"] = Field(
        "mean", description="Per-response reduction over scored tokens: 'mean' = the reference code's training "
                            "loss (spec §1.4); 'sum' = full sequence log-prob as in Eq. 2 and the MI metric (§1.6).")
    layout: Literal["auto", "packed", "naive"] = Field(
        "auto", description="'packed' shares each prompt across the C responses with a block-causal 4D mask "
                            "(fast); 'naive' runs C² prompt+response sequences; 'auto' = packed where the model "
                            "supports it, else naive with one log line.")
    add_bos: bool = Field(True, description="Put the tokenizer's BOS token once at the start of every prompt "
                                            "(nothing happens if the tokenizer has no BOS).")
    max_length: int | None = Field(
        None, ge=2, description="Longest prompt+response sequence (tokens); longer prompts are truncated from the "
                                "left (after the BOS). None = no limit.")


@dataclass
class ScoreOutput:
    """What :func:`~sami_toolkit.training.scoring.score_matrix` returns with ``return_logits=True``.

    ``logits[b, k, j, t]`` is the LM-head output that predicts the t-th *scored* token of response j under
    constitution k (shape ``[B, C, C, R_max, V]``, zeros where ``mask`` is False).  The order depends only on the
    inputs, never on the layout, so a frozen reference model scored on the same inputs gives aligned logits for
    :func:`sami_toolkit.training.losses.kl_response_tokens` (``kl_response_tokens(out.logits, ref.logits, out.mask)``).
    """

    scores: torch.Tensor  #: [B, C, C] float32, rows = constitutions, columns = responses
    logits: torch.Tensor | None  #: [B, C, C, R_max, V] response-position logits (return_logits only)
    mask: torch.Tensor  #: [B, C, C, R_max] bool, True on scored response tokens
    token_counts: torch.Tensor  #: [B, C] number of scored tokens of each response
    layout: str  #: the layout actually used ("packed" or "naive")
