"""Response log-probs with vLLM's ``prompt_logprobs``: log p(response | prompt) at inference speed.

The paper's MI numbers (spec §1.6) were scored this way: each prompt+response is sent as a *prompt* with
``prompt_logprobs=0`` and ``max_tokens=1``, and the log-probs vLLM returns for the response positions are summed.
Two pitfalls of the reference code (spec §1.6, §10.13) are fixed here:

* **no BOS** — the reference tokenised with ``add_special_tokens=False``; here the BOS is put once at the start of
  the prompt, exactly as :func:`sami_toolkit.training.scoring.score_matrix` does for training, so vLLM and the core score
  the same token sequence;
* **``labels != 0``** — the reference dropped every token with id 0 (``!`` for Llama 3); here every response token
  is scored except EOS ids, again as the core does (spec §1.4).

Tokenisation is shared with the core: :func:`sami_toolkit.training.scoring.encode` tokenises prompt and response
*separately* and concatenates the ids (spec §10.12), so a tokenizer that merges across the prompt/response
boundary cannot shift the scored span.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from sami_toolkit.core.errors import InfrastructureError

from .engine import generate_checked

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .engine import VLLMEngine, VLLMEngineOptions

Reduction = Literal["sum", "mean"]


def _entry_logprob(entry: Any, token_id: int, position: int) -> float:
    """The log-prob of ``token_id`` in one ``prompt_logprobs`` entry (a mapping token id -> ``Logprob``)."""
    if entry is None:
        raise InfrastructureError(f"vLLM returned no prompt log-prob at position {position}")
    try:
        value = entry[token_id]
    except (KeyError, IndexError, TypeError):
        raise InfrastructureError(f"vLLM's prompt log-probs at position {position} do not include token {token_id}; "
                                  f"this vLLM release returns prompt_logprobs in an unexpected shape") from None
    return float(getattr(value, "logprob", value))


def _score_sequences(llm: Any, vllm: Any, sequences: Sequence[tuple[list[int], list[int], list[bool]]],
                     reduction: Reduction, *, chunk_size: int,
                     progress: Callable[[int], Any] | None) -> list[float]:
    """Score ``(prompt_ids, response_ids, scored)`` triples: sum (or mean) of the scored response tokens'
    log-probs, read from ``prompt_logprobs`` of the concatenated ids."""
    params = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
    out: list[float] = []
    for start in range(0, len(sequences), chunk_size):
        chunk = sequences[start:start + chunk_size]
        requests = [{"prompt_token_ids": p + r} for p, r, _ in chunk]
        results = generate_checked(llm, requests, params)
        if len(results) != len(chunk):
            raise InfrastructureError(f"vLLM returned {len(results)} outputs for {len(chunk)} scoring requests")
        for (p, r, scored), result in zip(chunk, results):
            logprobs = result.prompt_logprobs
            if logprobs is None or len(logprobs) != len(p) + len(r):
                got = "none" if logprobs is None else len(logprobs)
                raise InfrastructureError(f"vLLM returned {got} prompt log-probs for a {len(p) + len(r)}-token "
                                          f"sequence")
            # entry i is log p(token_i | tokens_<i); entry 0 is None, and the prompt is never empty (BOS or text),
            # so every response token has an entry.
            total, count = 0.0, 0
            for t, (tok, keep) in enumerate(zip(r, scored)):
                if keep:
                    total += _entry_logprob(logprobs[len(p) + t], tok, len(p) + t)
                    count += 1
            out.append(total if reduction == "sum" else total / count)
        if progress is not None:
            progress(len(chunk))
    return out


def _scoring_options(reduction: Reduction, add_bos: bool, max_length: int | None) -> Any:
    from sami_toolkit.training.scoring import ScoringOptions

    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown reduction '{reduction}'; use 'sum' or 'mean'")
    return ScoringOptions(reduction=reduction, add_bos=add_bos, max_length=max_length)


def _engine(model: "str | VLLMEngine", options: "VLLMEngineOptions | None") -> tuple["VLLMEngine", bool, str | None]:
    """An engine for ``model``: the given :class:`VLLMEngine` (kept open) or a new one (closed afterwards)."""
    from .engine import VLLMEngine, VLLMEngineOptions

    if isinstance(model, VLLMEngine):
        return model, False, None
    return VLLMEngine(options or VLLMEngineOptions()), True, str(model)


def score_logprobs(model: "str | VLLMEngine", prompts: Sequence[str], responses: Sequence[str], *,
                   reduction: Reduction = "sum", add_bos: bool = True, max_length: int | None = None,
                   options: "VLLMEngineOptions | None" = None, chunk_size: int = 2048,
                   progress: Callable[[int], Any] | None = None) -> list[float]:
    """``log p(responses[i] | prompts[i])`` for every i, summed (or averaged) over response tokens.

    ``model`` is a model reference (loaded with ``options`` and closed afterwards) or an already loaded
    :class:`~sami_kit_vllm.engine.VLLMEngine` (kept open; it must have had ``get(model)`` called).  The numbers
    equal ``sami_toolkit.training.scoring.score_matrix`` with the same ``reduction``/``add_bos``/``max_length`` up to the
    numerical precision of the engine's dtype.
    """
    from sami_toolkit.training.scoring import encode

    from .engine import import_vllm

    if isinstance(prompts, str) or isinstance(responses, str):
        raise ValueError("score_logprobs: prompts and responses must be sequences of strings, not one string")
    if len(prompts) != len(responses):
        raise ValueError(f"score_logprobs: {len(prompts)} prompts but {len(responses)} responses")
    if not prompts:
        return []
    opts = _scoring_options(reduction, add_bos, max_length)
    engine, owned, ref = _engine(model, options)
    try:
        llm = engine.get(ref) if ref is not None else engine.llm
        if llm is None:
            raise ValueError("score_logprobs: the VLLMEngine has no model loaded; call engine.get(model) first")
        enc = encode(engine.tokenizer(), [[p] for p in prompts], [[r] for r in responses], opts)
        seqs = [(enc.prompts[i][0], enc.responses[i][0], enc.scored[i][0]) for i in range(enc.batch)]
        return _score_sequences(llm, import_vllm(), seqs, reduction, chunk_size=chunk_size, progress=progress)
    finally:
        if owned:
            engine.close()


def score_matrix_vllm(model: "str | VLLMEngine", prompts: Sequence[Sequence[str]],
                      responses: Sequence[Sequence[str]], *, reduction: Reduction = "sum", add_bos: bool = True,
                      max_length: int | None = None, options: "VLLMEngineOptions | None" = None,
                      chunk_size: int = 2048, progress: Callable[[int], Any] | None = None) -> "torch.Tensor":
    """The C×C score matrix of spec §1.2 for a batch of queries, computed with vLLM.

    ``prompts[b][k]`` is the scoring prompt of query b with constitution k, ``responses[b][j]`` response j of
    query b; returns a float32 tensor ``S`` of shape ``[B, C, C]`` with ``S[b, k, j] = ℓ(y_bj | prompts[b][k])``
    (rows = constitutions, columns = responses), the drop-in equivalent of
    :func:`sami_toolkit.training.scoring.score_matrix` (without gradients) for MI evaluation at scale (spec §1.6).
    ``progress(n)`` is called with the number of (k, j) pairs finished.
    """
    import torch

    from sami_toolkit.training.scoring import encode

    from .engine import import_vllm

    opts = _scoring_options(reduction, add_bos, max_length)
    engine, owned, ref = _engine(model, options)
    try:
        llm = engine.get(ref) if ref is not None else engine.llm
        if llm is None:
            raise ValueError("score_matrix_vllm: the VLLMEngine has no model loaded; call engine.get(model) first")
        enc = encode(engine.tokenizer(), prompts, responses, opts)
        seqs = [(enc.prompts[b][k], enc.responses[b][j], enc.scored[b][j])
                for b in range(enc.batch) for k in range(enc.c) for j in range(enc.c)]
        flat = _score_sequences(llm, import_vllm(), seqs, reduction, chunk_size=chunk_size, progress=progress)
    finally:
        if owned:
            engine.close()
    return torch.tensor(flat, dtype=torch.float32).view(enc.batch, enc.c, enc.c)
