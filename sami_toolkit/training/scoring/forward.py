"""One forward pass over a :class:`~.batches.ModelBatch`, returning logits only where a scored token is predicted.

The LM head is applied to response-predicting positions only (the decoder's hidden states are gathered first), so
the ``[N, T, V]`` logits of the whole batch are never built; models whose head output is post-processed (soft-capping,
logit scales) take the full forward instead, so the numbers stay the model's own.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from sami_toolkit.training.scoring.attention import PREFIX_KWARG, prefix_split_attention
from sami_toolkit.training.scoring.batches import ModelBatch
from sami_toolkit.training.scoring.layout import attn_implementation

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: config fields that post-process the LM head output; when set, the full model forward is used for logits.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def compute_dtype(model: Any, device: torch.device) -> torch.dtype:
    """The dtype attention scores are computed in: the autocast dtype if autocast is on, else the weights'."""
    import torch

    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return next(model.parameters()).dtype


def _head_only_supported(model: Any) -> bool:
    config = model.config
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _LOGIT_POSTPROCESSING):
        return False
    return callable(getattr(model, "get_decoder", None)) and model.get_output_embeddings() is not None


def response_logits(model: Any, batch: ModelBatch, *, packed: bool, debug: str | None) -> torch.Tensor:
    """Run the model once and return the LM-head output at the predicting positions, ``[M, V]``."""
    kwargs: dict[str, Any] = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                              "use_cache": False}
    if not (packed and debug == "no_position_ids"):
        kwargs["position_ids"] = batch.position_ids
    if _head_only_supported(model):
        # LM head on response-predicting positions only: the [N, T, V] logits of the whole batch are never built
        from sami_toolkit.models.loading import activation_checkpointing_enabled

        decoder = model.get_decoder()
        # not under gradient checkpointing: its recompute in the backward pass runs after the switch is undone and
        # must save the same tensors as the forward (torch checks), so checkpointed models use the full mask
        split = (packed and attn_implementation(model) == "sdpa" and batch.causal_prefix > 1
                 and not activation_checkpointing_enabled(decoder))
        if split:
            kwargs[PREFIX_KWARG] = batch.causal_prefix
        with prefix_split_attention(decoder.config) if split else contextlib.nullcontext():
            hidden = decoder(**kwargs).last_hidden_state
        selected = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.predict_index)
        return model.get_output_embeddings()(selected)
    logits = model(**kwargs).logits
    return logits.reshape(-1, logits.shape[-1]).index_select(0, batch.predict_index)
