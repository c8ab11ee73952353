"""The SAMI training step: score the C×C matrix, apply the loss and the optional KL term, accumulate the gradient.

A trainer plugin (``torch`` built in, ``deepspeed`` in ``plugins/sami-kit-deepspeed``) owns only the *engine*; the
SAMI maths — scoring the C×C log-prob matrix (spec §1.2, §1.4), the loss (spec §1.3), the optional KL term
(spec §3) and the exact-mean gradient accumulation (spec §10.4) — lives here so every engine computes the same
gradient.  The loss arrives as a callable (the request's resolved Loss component): this module never looks
anything up in the plugin system.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from sami_toolkit.training.precision import autocast_context
from sami_toolkit.training.scoring.matrix import score_matrix
from sami_toolkit.training.settings import TrainSettings


def _score(model: Any, tokenizer: Any, queries: Sequence[dict], settings: TrainSettings,
           return_logits: bool) -> Any:
    """The C×C score matrix of each query from its pairs.jsonl record (a ScoreOutput with ``return_logits``)."""
    prompts = [q["train_prompts"] for q in queries]
    responses = [q["responses"] for q in queries]
    return score_matrix(model, tokenizer, prompts, responses, settings.scoring, return_logits=return_logits)


def count_tokens(tokenizer: Any, queries: Sequence[dict]) -> int:
    """Tokens in the C² (prompt, response) pairings of ``queries`` — the logical work of one scoring pass,
    independent of the scoring layout, so tokens/s is comparable across layouts and engines."""
    total = 0
    for q in queries:
        c = len(q["responses"])
        prompt_lengths = [len(ids) for ids in tokenizer(list(q["train_prompts"]))["input_ids"]]
        response_lengths = [len(ids) for ids in tokenizer(list(q["responses"]), add_special_tokens=False)["input_ids"]]
        total += c * sum(prompt_lengths) + c * sum(response_lengths)
    return total


def sami_step(model: Any, tokenizer: Any, batch: Sequence[dict], settings: TrainSettings, *,
              loss_fn: Callable[[Any], Any], reference_model: Any = None,
              backward: Callable[[Any], Any] | None = None, total_queries: int | None = None,
              weight_scale: float = 1.0) -> dict:
    """Accumulate one optimizer step's gradient for ``batch`` (does not step the optimizer).

    The batch is split into micro-batches of ``settings.micro_batch_size`` queries; each micro-batch's loss
    (the mean over its queries, spec §1.3) is weighted by its share ``m / total_queries`` of the batch before
    ``backward``, so the accumulated gradient is exactly the gradient of the **mean per-query loss over the
    batch** even when the last micro-batch is smaller (spec §10.4: the authors' trainer zeroed the gradient
    at every micro-step and so used only the last micro-batch).

    * ``kl_beta > 0`` adds ``beta * KL(π_θ || π_ref)`` on response tokens (spec §3) against ``reference_model``
      (or, for a peft model without one, the same model with its adapter disabled).
    * ``backward`` defaults to ``loss.backward()``; engines pass their own (DeepSpeed: ``engine.backward``).
    * ``total_queries`` / ``weight_scale`` let a data-parallel engine weight a rank's share of a global batch
      (weight = ``weight_scale * m / total_queries``; default ``1 * m / len(batch)``).

    Returns ``{"loss", "loss_row", "loss_col", "kl", "tokens", "queries"}`` over this batch (means per query; kl
    without its weight). ``loss_row`` and ``loss_col`` are the two halves of the paper's loss, L_row (softmax over
    responses) and L_col (over constitutions), spec §1.3, measured on the same scores whichever loss trains: they
    tell a run whose loss falls on one side only (e.g. by response length, spec §1.6) from one that learns both."""
    if not batch:
        raise ValueError("sami_step needs at least one query")
    total = total_queries or len(batch)
    device = next(model.parameters()).device
    beta = settings.kl_beta
    use_kl = beta > 0
    if use_kl and reference_model is None and not _has_adapter(model):
        raise ValueError("kl_beta > 0 needs a reference model (or a LoRA model, whose adapter can be disabled)")
    do_backward = backward or (lambda value: value.backward())
    mbs = settings.micro_batch_size
    loss_sum = kl_sum = row_sum = col_sum = 0.0
    tokens = 0
    for start in range(0, len(batch), mbs):
        micro = batch[start:start + mbs]
        m = len(micro)
        with autocast_context(settings, str(device)):
            result = _score(model, tokenizer, micro, settings,
                            return_logits=use_kl and settings.kl_mode != "all_positions")
            scores = getattr(result, "scores", result)  # a ScoreOutput when logits were asked for
            loss = loss_fn(scores)
            objective = loss
            if use_kl:
                kl = _kl_term(model, tokenizer, micro, settings, result, reference_model)
                objective = loss + beta * kl
                kl_sum += float(kl.detach()) * m
        do_backward(objective * (weight_scale * m / total))
        loss_sum += float(loss.detach()) * m
        row, col = _loss_parts(scores)
        row_sum, col_sum = row_sum + row * m, col_sum + col * m
        tokens += count_tokens(tokenizer, micro)
        del result, scores, loss, objective
    metrics = {"loss": loss_sum / len(batch), "loss_row": row_sum / len(batch), "loss_col": col_sum / len(batch),
               "tokens": tokens, "queries": len(batch)}
    if use_kl:
        metrics["kl"] = kl_sum / len(batch)
    return metrics


def _loss_parts(scores: Any) -> tuple[float, float]:
    """Mean L_row and L_col (spec §1.3) of a micro-batch's score matrices, without gradient (reporting only)."""
    import torch

    from sami_toolkit.training.losses import sami_loss

    with torch.no_grad():
        detached = scores.detach()
        return (float(sami_loss(detached, "responses")), float(sami_loss(detached, "constitutions")))


def _has_adapter(model: Any) -> bool:
    """A peft model (or an engine's proxy around one) can serve as its own KL reference with the adapter off:
    anything with peft's ``disable_adapter()`` context manager (plain transformers models have none)."""
    return callable(getattr(model, "disable_adapter", None))


def _reference(model: Any, reference_model: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to the KL reference without gradient: the frozen model, or a peft model's base network."""
    import torch

    with torch.no_grad():
        if reference_model is not None:
            return fn(reference_model)
        with model.disable_adapter():
            return fn(model)


def _all_position_logits(model: Any, tokenizer: Any, micro: Sequence[dict], settings: TrainSettings) -> Any:
    """Logits ``[N, T, V]`` at every position of the C² right-padded prompt + response rows (the reference code's
    forward pass, whose KL includes prompt and padding positions, spec §3)."""
    from sami_toolkit.training.scoring.batches import naive_batch
    from sami_toolkit.training.scoring.encoding import encode

    enc = encode(tokenizer, [q["train_prompts"] for q in micro], [q["responses"] for q in micro], settings.scoring)
    batch = naive_batch(enc)
    device = next(model.parameters()).device
    return model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)).logits


def _kl_term(model: Any, tokenizer: Any, micro: Sequence[dict], settings: TrainSettings, policy_result: Any,
             reference_model: Any) -> Any:
    """KL(π_θ || π_ref) of the same C² sequences (spec §3, §10.17), as ``settings.kl_mode`` says: on response
    tokens (default), per sequence (the paper) or over every position (the reference code)."""
    import torch

    from sami_toolkit.training.losses import kl_all_positions, kl_response_tokens, kl_sequence

    if settings.kl_mode == "all_positions":
        policy_logits = _all_position_logits(model, tokenizer, micro, settings)
        ref_logits = _reference(model, reference_model,
                                lambda m: _all_position_logits(m, tokenizer, micro, settings))
        return kl_all_positions(policy_logits, ref_logits.to(policy_logits.device))
    _, policy_logits, mask = _unpack_logits(policy_result)
    with torch.no_grad():
        if reference_model is not None:
            ref_result = _score(reference_model, tokenizer, micro, settings, return_logits=True)
        else:  # a peft model: the reference is the base network under the adapter
            with model.disable_adapter():
                ref_result = _score(model, tokenizer, micro, settings, return_logits=True)
    _, ref_logits, _ = _unpack_logits(ref_result)
    if settings.kl_mode == "sequence":
        return kl_sequence(policy_logits, ref_logits.to(policy_logits.device), mask)
    return kl_response_tokens(policy_logits, ref_logits.to(policy_logits.device), mask)


def _unpack_logits(result: Any) -> tuple[Any, Any, Any]:
    """``score_matrix(..., return_logits=True)`` (a ``ScoreOutput``) → ``(scores, logits, response_mask)``."""
    return result.scores, result.logits, result.mask
