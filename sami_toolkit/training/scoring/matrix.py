"""The public scoring entry points: the C×C log-prob matrix S of a batch, from text or from token ids.

``S[b, k, j] = ℓ_θ(y_j | prompt(x_b, c_k))`` (spec §1.2, §1.4): rows are constitutions, columns are responses.
This module ties the steps together — tokenise (:mod:`.encoding`), pick a layout (:mod:`.layout`), build the
model inputs (:mod:`.batches`), one forward (:mod:`.forward`), selective log-softmax (:mod:`.log_softmax`) — and
reduces the token log-probs per response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from sami_toolkit.training.scoring.batches import DEBUG_MODES, naive_batch, packed_batch
from sami_toolkit.training.scoring.encoding import Encoded, encode, encode_token_ids
from sami_toolkit.training.scoring.forward import compute_dtype, response_logits
from sami_toolkit.training.scoring.layout import choose_layout
from sami_toolkit.training.scoring.log_softmax import selective_log_probs
from sami_toolkit.training.scoring.options import ScoreOutput, ScoringOptions

if TYPE_CHECKING:  # pragma: no cover
    import torch


def score_matrix(model: Any, tokenizer: Any, prompts: Sequence[Sequence[str]], responses: Sequence[Sequence[str]],
                 options: ScoringOptions | None = None, *, return_logits: bool = False,
                 _debug: str | None = None) -> torch.Tensor | ScoreOutput:
    """Score every (constitution, response) pair of a batch in one forward pass (spec §1.2, §1.4).

    ``prompts[b][k]`` is the scoring (training) prompt of query b with constitution k; ``responses[b][j]`` is
    response j of query b.  Returns ``S`` of shape ``[B, C, C]`` (float32, differentiable w.r.t. the model's
    parameters) with ``S[b, k, j] = ℓ(y_bj | prompts[b][k])``, the mean (or sum, ``options.reduction``) of the
    response's token log-probs.  With ``return_logits=True`` returns a :class:`ScoreOutput` that also holds the
    response-position logits and mask in a layout-independent order (for the KL regulariser).

    Raises ValueError for malformed input (ragged C, an empty response) and
    :class:`~sami_toolkit.core.errors.ConfigError` if ``layout="packed"`` is forced on a model that cannot take it.
    ``_debug`` (tests only) forces the packed layout with one of the known silent bugs, see
    :func:`sami_toolkit.training.scoring.batches.packed_batch`.
    """
    options = options or ScoringOptions()
    enc = encode(tokenizer, prompts, responses, options)
    return _score_encoded(model, enc, options, return_logits=return_logits, debug=_debug)


def score_token_ids(model: Any, prompt_ids: Sequence[Sequence[Sequence[int]]],
                    response_ids: Sequence[Sequence[Sequence[int]]], options: ScoringOptions | None = None, *,
                    eos_token_id: int | None = None, pad_token_id: int = 0,
                    return_logits: bool = False) -> torch.Tensor | ScoreOutput:
    """:func:`score_matrix` on already tokenised input (e.g. cached ids, or the benchmark's random ids).

    ``prompt_ids[b][k]`` must already hold any BOS (``options.add_bos`` and ``max_length`` are not applied);
    response tokens equal to ``eos_token_id`` are not scored (spec §1.4).
    """
    options = options or ScoringOptions()
    enc = encode_token_ids(prompt_ids, response_ids, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    return _score_encoded(model, enc, options, return_logits=return_logits, debug=None)


def _score_encoded(model: Any, enc: Encoded, options: ScoringOptions, *, return_logits: bool,
                   debug: str | None) -> torch.Tensor | ScoreOutput:
    import torch

    if debug is not None and debug not in DEBUG_MODES:
        raise ValueError(f"unknown _debug mode {debug!r}; one of {sorted(DEBUG_MODES)}")
    layout = "packed" if debug is not None else choose_layout(model, options, enc.longest_sequence)
    device = next(model.parameters()).device
    if layout == "packed":
        batch = packed_batch(enc, compute_dtype(model, device), debug, device)
    else:
        batch = naive_batch(enc)
    batch = batch.to(device)
    logits = response_logits(model, batch, packed=layout == "packed", debug=debug)
    token_logp = selective_log_probs(logits, batch.targets)  # [M], canonical (b, k, j, t) order

    slot = batch.slot_mask
    per_slot = torch.zeros(slot.shape, dtype=token_logp.dtype, device=device).masked_scatter(slot, token_logp)
    sums = per_slot.sum(dim=-1)  # [B, C, C]
    counts = slot[:, 0].sum(dim=-1)  # [B, C]: scored tokens of response j
    scores = sums if options.reduction == "sum" else sums / counts.unsqueeze(1).to(sums.dtype)
    if not return_logits:
        return scores
    full = torch.zeros((*slot.shape, logits.shape[-1]), dtype=logits.dtype, device=device)
    full = full.masked_scatter(slot.unsqueeze(-1), logits)
    return ScoreOutput(scores=scores, logits=full, mask=slot, token_counts=counts, layout=layout)
