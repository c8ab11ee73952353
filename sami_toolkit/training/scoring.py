"""The C×C log-prob matrix S for a batch of queries (spec §1.2, §1.4), in one forward pass.

``S[b, k, j] = ℓ_θ(y_j | prompt(x_b, c_k))``: rows are constitutions, columns are responses.  Two layouts compute
the same numbers:

* **naive** — the reference code's layout (spec §1.4 step 5): C² sequences ``prompt_k + response_j`` per query,
  right-padded, one forward.  Works with every causal LM and attention backend.
* **packed** — one sequence ``[prompt_k, response_1, …, response_C]`` per (query, constitution) with a
  block-causal 4D mask: each response sees prompt_k and its own earlier tokens only, and its position ids restart
  where the prompt ends, so every response token sees exactly the context and positions it has in the naive
  layout.  It runs C·P + C²·R tokens instead of C²·(P+R) (2–3× faster and half the memory at P ≫ R; see
  ``docs/scoring.md``).  Used where the model is known to accept a custom additive 4D mask (an allow-list of
  architectures × sdpa/eager); anything else falls back to naive with one log line, never silently wrong numbers.

Under sdpa, packed attention is split at the shared causal prefix (the shortest prompt): those queries run as
plain causal sdpa, which kernels compute block-sparsely, and only the rest use the mask (:func:`_prefix_split_sdpa`).

Both layouts apply the LM head only to response-predicting positions and take a selective log-softmax
(logsumexp + gather, with a fused backward), never a full ``[positions × vocab]`` log_softmax.

Tokenisation follows spec §10.12: prompt and response are tokenised separately (no special tokens) and their ids
concatenated, so a tokenizer that merges across the ``Summary:``/response boundary cannot shift the mask.  The
tokenizer's BOS is put once at the start of the prompt (``add_bos``).  Masking follows spec §1.4: prompt, BOS,
padding and every EOS id inside a response are not scored; no EOS is appended (one would be masked and nothing
follows it, so it could not change a score).

Torch is imported inside functions: :class:`ScoringOptions` is used by config validation at CLI start-up.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from sami_toolkit.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger("sami_toolkit.training.scoring")

#: model_type values whose attention is verified (tests/test_packed_scoring.py) to honour a custom additive 4D mask
#: with explicit position ids under sdpa and eager.  Extend only together with a test.
PACKED_MODEL_TYPES: frozenset[str] = frozenset({"llama", "mistral", "qwen2"})
#: attention implementations that take the additive float mask as-is (transformers passes a 4D mask through).
PACKED_ATTN_IMPLEMENTATIONS: frozenset[str] = frozenset({"sdpa", "eager"})
#: config fields that post-process the LM head output; when set, the full model forward is used for logits.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")

_warned: set[str] = set()
#: test-only switches of :func:`score_matrix`: force the packed layout, optionally with a known silent bug
_DEBUG_MODES = frozenset({"force", "bool_mask", "one_zero_mask", "no_position_ids", "no_position_restart"})


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
    """What :func:`score_matrix` returns with ``return_logits=True``.

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


@dataclass
class _Encoded:
    """Token ids of one batch: prompts[b][k], responses[b][j], and which response tokens are scored."""

    prompts: list[list[list[int]]]
    responses: list[list[list[int]]]
    scored: list[list[list[bool]]]
    pad_id: int

    @property
    def batch(self) -> int:
        return len(self.prompts)

    @property
    def c(self) -> int:
        return len(self.prompts[0])

    @property
    def r_max(self) -> int:
        return max(sum(s) for row in self.scored for s in row)


# ----------------------------------------------------------------------------------------------- tokenising
def _token_id(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return None if value is None else int(value)


def encode(tokenizer: Any, prompts: Sequence[Sequence[str]], responses: Sequence[Sequence[str]],
           options: ScoringOptions) -> _Encoded:
    """Tokenise prompts and responses separately (spec §10.12) and work out the scored response tokens (§1.4)."""
    if len(prompts) == 0:
        raise ValueError("score_matrix: empty batch (no queries)")
    if len(prompts) != len(responses):
        raise ValueError(f"score_matrix: {len(prompts)} prompt lists but {len(responses)} response lists; "
                         f"give one list of C prompts and one list of C responses per query")
    c = len(prompts[0])
    for b, (ps, rs) in enumerate(zip(prompts, responses)):
        if isinstance(ps, str) or isinstance(rs, str):
            raise ValueError(f"score_matrix: query {b} must have a list of C prompts and a list of C responses, "
                             f"not a single string")
        if len(ps) != c or len(rs) != c:
            raise ValueError(f"score_matrix: query {b} has {len(ps)} prompts and {len(rs)} responses; every query "
                             f"needs the same number C = {c} of each (one prompt per constitution, one response each)")
    if c < 1:
        raise ValueError("score_matrix: C = 0 constitutions per query")

    flat_p = [p for ps in prompts for p in ps]
    flat_r = [r for rs in responses for r in rs]
    ids_p = tokenizer(flat_p, add_special_tokens=False)["input_ids"]
    ids_r = tokenizer(flat_r, add_special_tokens=False)["input_ids"]
    bos = _token_id(getattr(tokenizer, "bos_token_id", None)) if options.add_bos else None
    eos = _token_id(getattr(tokenizer, "eos_token_id", None))
    pad = _token_id(getattr(tokenizer, "pad_token_id", None))
    pad_id = pad if pad is not None else (eos if eos is not None else 0)

    out_p: list[list[list[int]]] = []
    out_r: list[list[list[int]]] = []
    out_s: list[list[list[bool]]] = []
    for b in range(len(prompts)):
        resp = [list(ids_r[b * c + j]) for j in range(c)]
        scored = [[tok != eos for tok in r] for r in resp]
        for j, (r, s) in enumerate(zip(resp, scored)):
            if not r:
                raise ValueError(f"score_matrix: response {j} of query {b} is empty (0 tokens); filter out empty "
                                 f"responses before scoring")
            if not any(s):
                raise ValueError(f"score_matrix: response {j} of query {b} has no token to score (only EOS); "
                                 f"filter it out before scoring")
        longest = max(len(r) for r in resp)
        row: list[list[int]] = []
        for k in range(c):
            p = list(ids_p[b * c + k])
            head: list[int] = []
            if bos is not None:
                head = [bos]
                if p and p[0] == bos:
                    p = p[1:]
            if options.max_length is not None and len(head) + len(p) + longest > options.max_length:
                room = options.max_length - longest - len(head)
                if room < (0 if head else 1):
                    raise ValueError(f"score_matrix: max_length={options.max_length} leaves no room for the prompt "
                                     f"of query {b}: its longest response has {longest} tokens; raise max_length")
                p = p[len(p) - room:] if room > 0 else []
            p = head + p
            if not p:
                raise ValueError(f"score_matrix: prompt {k} of query {b} is empty and the tokenizer has no BOS; "
                                 f"the first response token needs at least one context token")
            row.append(p)
        out_p.append(row)
        out_r.append(resp)
        out_s.append(scored)
    return _Encoded(out_p, out_r, out_s, pad_id)


# ----------------------------------------------------------------------------------------------- layout choice
def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message)


def _attn_implementation(model: Any) -> str:
    config = model.config
    return str(getattr(config, "_attn_implementation", None) or getattr(config, "attn_implementation", None)
               or "eager")


def _sliding_window(config: Any) -> int | None:
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    return int(window)


def packed_unsupported_reason(model: Any, longest_sequence: int | None = None) -> str | None:
    """Why ``model`` cannot use the packed layout, or None if it can (an allow-list, not a guess)."""
    config = model.config
    model_type = getattr(config, "model_type", "?")
    attn = _attn_implementation(model)
    if model_type not in PACKED_MODEL_TYPES:
        return (f"model type '{model_type}' is not verified with a custom 4D attention mask "
                f"(verified: {', '.join(sorted(PACKED_MODEL_TYPES))})")
    if attn not in PACKED_ATTN_IMPLEMENTATIONS:
        return (f"attention implementation '{attn}' cannot take a custom additive 4D mask "
                f"(packed scoring needs one of: {', '.join(sorted(PACKED_ATTN_IMPLEMENTATIONS))})")
    window = _sliding_window(config)
    if window is not None and longest_sequence is not None and longest_sequence > window:
        return (f"the scored sequences exceed the model's sliding window of {window} tokens, which a custom 4D "
                f"mask would bypass")
    return None


def choose_layout(model: Any, options: ScoringOptions, longest_sequence: int | None = None) -> str:
    """Resolve ``options.layout`` for ``model``: auto → packed if supported, else naive with one warning."""
    if options.layout == "naive":
        return "naive"
    reason = packed_unsupported_reason(model, longest_sequence)
    if reason is None:
        return "packed"
    if options.layout == "packed":
        raise ConfigError(f"scoring.layout=packed is not possible: {reason}",
                          hint="use scoring.layout: auto (falls back to naive) or naive")
    _warn_once(reason, f"packed SAMI scoring disabled, using the naive C² layout (slower, same numbers): {reason}")
    return "naive"


# ----------------------------------------------------------------------------------------------- batches
@dataclass
class _Batch:
    """Model inputs plus, for every scored token in canonical (b, k, j, t) order, where its predicting hidden
    state sits (flat index into [N*T]) and its target id."""

    input_ids: torch.Tensor  # [N, T]
    position_ids: torch.Tensor  # [N, T]
    attention_mask: torch.Tensor  # [N, T] (naive, 1/0) or [N, 1, T, T] (packed, additive float)
    predict_index: torch.Tensor  # [M] flat positions into [N*T]
    targets: torch.Tensor  # [M]
    slot_mask: torch.Tensor  # [B, C, C, R_max] bool, True where a scored token sits (M of them)
    #: packed only: the first ``causal_prefix`` positions of every row are prompt tokens with a plain causal mask
    #: (the shortest prompt's length), which the split sdpa attention computes without the mask; 0 = no split
    causal_prefix: int = 0


def _slot_mask(enc: _Encoded) -> torch.Tensor:
    import torch

    mask = torch.zeros(enc.batch, enc.c, enc.c, enc.r_max, dtype=torch.bool)
    for b in range(enc.batch):
        for j in range(enc.c):
            n = sum(enc.scored[b][j])
            mask[b, :, j, :n] = True
    return mask


def _naive_batch(enc: _Encoded) -> _Batch:
    """C² rows prompt_k + response_j per query, right-padded (spec §1.4 step 5)."""
    import torch

    rows: list[list[int]] = []
    predict: list[int] = []
    targets: list[int] = []
    lengths = [len(enc.prompts[b][k]) + len(enc.responses[b][j])
               for b in range(enc.batch) for k in range(enc.c) for j in range(enc.c)]
    width = max(lengths)
    n = 0
    for b in range(enc.batch):
        for k in range(enc.c):
            prompt = enc.prompts[b][k]
            for j in range(enc.c):
                resp = enc.responses[b][j]
                ids = prompt + resp
                rows.append(ids + [enc.pad_id] * (width - len(ids)))
                p = len(prompt)
                for t, (tok, scored) in enumerate(zip(resp, enc.scored[b][j])):
                    if scored:
                        predict.append(n * width + p + t - 1)
                        targets.append(tok)
                n += 1
    input_ids = torch.tensor(rows, dtype=torch.long)
    attention = torch.tensor([[1] * ln + [0] * (width - ln) for ln in lengths], dtype=torch.long)
    positions = torch.arange(width, dtype=torch.long).unsqueeze(0).expand(len(rows), -1).contiguous()
    return _Batch(input_ids, positions, attention, torch.tensor(predict, dtype=torch.long),
                  torch.tensor(targets, dtype=torch.long), _slot_mask(enc))


def _packed_batch(enc: _Encoded, mask_dtype: torch.dtype, debug: str | None = None,
                  device: torch.device | str = "cpu") -> _Batch:
    """One row [prompt_k, response_1..C] per (query, k) with a block-causal additive mask (spec §1.2 scores,
    computed without repeating the prompt).

    ``debug`` builds the known silent failure modes (tests only): ``bool_mask`` (eager adds it as 0/1),
    ``one_zero_mask`` (the old float convention), ``no_position_ids``, ``no_position_restart``; ``force`` is
    the correct packed layout, used even where the allow-list would choose naive.

    The [N, 1, T, T] mask is built on ``device`` from the small segment-id tensor: on a GPU, building it on the
    host and copying it over cost more than the packed forward saved (measured on an H100, bf16, C = 2).
    """
    import torch

    rows: list[list[int]] = []
    segments: list[list[int]] = []
    positions: list[list[int]] = []
    predict: list[int] = []
    targets: list[int] = []
    lengths = [len(enc.prompts[b][k]) + sum(len(r) for r in enc.responses[b])
               for b in range(enc.batch) for k in range(enc.c)]
    width = max(lengths)
    # rows are (b, k) and the loops below visit (j, t) in order, so predict/targets come out in the canonical
    # (b, k, j, t) order shared with the naive layout.
    n = 0
    for b in range(enc.batch):
        for k in range(enc.c):
            prompt = enc.prompts[b][k]
            p = len(prompt)
            ids = list(prompt)
            seg = [0] * p
            pos = list(range(p))
            for j, resp in enumerate(enc.responses[b]):
                start = len(ids)
                for t, (tok, scored) in enumerate(zip(resp, enc.scored[b][j])):
                    if scored:
                        # the first token of each response is predicted from the last prompt token
                        predict.append(n * width + (p - 1 if t == 0 else start + t - 1))
                        targets.append(tok)
                ids.extend(resp)
                seg.extend([j + 1] * len(resp))
                pos.extend(range(p, p + len(resp)) if debug != "no_position_restart"
                           else range(start, start + len(resp)))
            pad = width - len(ids)
            rows.append(ids + [enc.pad_id] * pad)
            segments.append(seg + [-1] * pad)
            positions.append(pos + [0] * pad)  # padding is never scored and only attends to itself
            n += 1
    seg_t = torch.tensor(segments, dtype=torch.long).to(device)  # [N, T]
    q_seg = seg_t[:, :, None]
    k_seg = seg_t[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    keep = causal & ((k_seg == 0) | (k_seg == q_seg)) & (q_seg >= 0)
    # padding rows attend to themselves (no NaN rows)
    keep |= torch.eye(width, dtype=torch.bool, device=device) & (q_seg < 0)
    keep = keep.unsqueeze(1)  # [N, 1, T, T]
    if debug == "bool_mask":
        mask = keep
    elif debug == "one_zero_mask":
        mask = keep.to(mask_dtype)
    else:
        mask = torch.zeros(keep.shape, dtype=mask_dtype, device=keep.device)
        mask.masked_fill_(~keep, torch.finfo(mask_dtype).min)
    pos_t = torch.tensor(positions, dtype=torch.long)
    # the known-bug modes exercise the masked attention path alone; the real layout splits off the shared prefix.
    # prompt + response_1 is causal too, but extending the split over it, or gathering each later response's keys
    # (prompt + itself) into small problems, was slower on the CPU flash kernel (docs/scoring.md, 2026-12-02)
    prefix = min(len(p) for row in enc.prompts for p in row) if debug in (None, "force") else 0
    return _Batch(torch.tensor(rows, dtype=torch.long), pos_t, mask, torch.tensor(predict, dtype=torch.long),
                  torch.tensor(targets, dtype=torch.long), _slot_mask(enc), prefix)


# ----------------------------------------------------------------------------------------------- forward
def _compute_dtype(model: Any, device: torch.device) -> torch.dtype:
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


def _response_logits(model: Any, batch: _Batch, *, packed: bool, debug: str | None) -> torch.Tensor:
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
        split = (packed and _attn_implementation(model) == "sdpa" and batch.causal_prefix > 1
                 and not activation_checkpointing_enabled(decoder))
        if split:
            kwargs[_PREFIX_KWARG] = batch.causal_prefix
        with _prefix_split_attention(decoder.config) if split else contextlib.nullcontext():
            hidden = decoder(**kwargs).last_hidden_state
        selected = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.predict_index)
        return model.get_output_embeddings()(selected)
    logits = model(**kwargs).logits
    return logits.reshape(-1, logits.shape[-1]).index_select(0, batch.predict_index)


# ----------------------------------------------------------------------------------------------- split attention
#: keyword the decoder passes through to every attention call (transformers forwards unknown model kwargs)
_PREFIX_KWARG = "sami_causal_prefix"
#: name under which :func:`_prefix_split_sdpa` is registered with transformers' AttentionInterface
_SPLIT_ATTENTION = "sami_prefix_split_sdpa"


def _prefix_split_sdpa(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """sdpa for packed rows, split at the shared causal prefix: the same numbers as sdpa with the full mask.

    The first ``prefix`` positions of every packed row are prompt tokens (``prefix`` = the shortest prompt), and
    they attend only to earlier prompt tokens: a plain causal pattern.  Those queries run as ``is_causal`` sdpa on
    the prefix keys alone, which the kernels compute block-sparsely (the CPU flash kernel and the GPU flash kernels
    skip the upper triangle); only the remaining queries (the rest of the prompts and the C responses) use the
    block-causal mask, over all keys.  With a dense 4D mask over the whole row the kernel computes every block, so
    at P = 300, R = 60, C = 4 the split does 40 % less attention work (the SAMI step took 18 % less time in bf16 on
    a CPU, docs/scoring.md).  Any call without the prefix keyword is plain sdpa.  Not used under gradient
    checkpointing (see :func:`_response_logits`).
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    prefix = kwargs.pop(_PREFIX_KWARG, None)
    length = query.shape[2]
    if (not prefix or attention_mask is None or attention_mask.dim() != 4 or key.shape[2] != length
            or not 1 < prefix < length):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    kwargs.pop("is_causal", None)
    head, _ = sdpa_attention_forward(module, query[:, :, :prefix], key[:, :, :prefix], value[:, :, :prefix], None,
                                     is_causal=True, **kwargs)
    tail, _ = sdpa_attention_forward(module, query[:, :, prefix:], key, value, attention_mask[:, :, prefix:],
                                     is_causal=False, **kwargs)
    return torch.cat([head, tail], dim=1), None  # sdpa_attention_forward returns [N, L, heads, head_dim]


@contextlib.contextmanager
def _prefix_split_attention(config: Any) -> Iterator[None]:
    """Route the decoder's attention through :func:`_prefix_split_sdpa` for one forward, then restore it.

    transformers looks the attention function up by ``config._attn_implementation`` at every call, so switching
    the name for the duration of the forward is enough; the backward pass does not look it up again.
    """
    from transformers import AttentionInterface

    if _SPLIT_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(_SPLIT_ATTENTION, _prefix_split_sdpa)
    previous = config._attn_implementation
    config._attn_implementation = _SPLIT_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = previous


def _selective_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[target] as gather − logsumexp, in float32 (float64 stays float64), without a [M, V]
    log_softmax tensor.

    The backward is fused (:func:`_selective_log_softmax_function`): autograd's own backward of gather − logsumexp
    builds three [M, V] tensors (the softmax, a zero-filled scatter for the gather, their sum), the fused one
    builds one, in place.
    """
    return _selective_log_softmax_function().apply(logits, targets)


@functools.lru_cache(maxsize=None)
def _selective_log_softmax_function() -> Any:
    """The autograd Function behind :func:`_selective_log_probs`, defined on first use (torch is imported late)."""
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
    ``_debug`` (tests only) forces the packed layout with one of the known silent bugs, see :func:`_packed_batch`.
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
    if len(prompt_ids) == 0 or len(prompt_ids) != len(response_ids):
        raise ValueError("score_token_ids: give one list of C prompt id lists and one of C response id lists "
                         "per query")
    c = len(prompt_ids[0])
    prompts = [[list(map(int, p)) for p in ps] for ps in prompt_ids]
    responses = [[list(map(int, r)) for r in rs] for rs in response_ids]
    for b, (ps, rs) in enumerate(zip(prompts, responses)):
        if len(ps) != c or len(rs) != c:
            raise ValueError(f"score_token_ids: query {b} has {len(ps)} prompts and {len(rs)} responses; "
                             f"expected C = {c} of each")
        for k, p in enumerate(ps):
            if not p:
                raise ValueError(f"score_token_ids: prompt {k} of query {b} is empty")
        for j, r in enumerate(rs):
            if not r or all(t == eos_token_id for t in r):
                raise ValueError(f"score_token_ids: response {j} of query {b} has no token to score")
    scored = [[[t != eos_token_id for t in r] for r in rs] for rs in responses]
    enc = _Encoded(prompts, responses, scored, pad_token_id)
    return _score_encoded(model, enc, options, return_logits=return_logits, debug=None)


def _score_encoded(model: Any, enc: _Encoded, options: ScoringOptions, *, return_logits: bool,
                   debug: str | None) -> torch.Tensor | ScoreOutput:
    import torch

    if debug is not None and debug not in _DEBUG_MODES:
        raise ValueError(f"unknown _debug mode {debug!r}; one of {sorted(_DEBUG_MODES)}")
    longest = max(len(p) + len(r) for b in range(enc.batch) for p in enc.prompts[b] for r in enc.responses[b])
    layout = "packed" if debug is not None else choose_layout(model, options, longest)
    device = next(model.parameters()).device
    if layout == "packed":
        batch = _packed_batch(enc, _compute_dtype(model, device), debug, device)
    else:
        batch = _naive_batch(enc)
    batch = _Batch(*(t.to(device) for t in (batch.input_ids, batch.position_ids, batch.attention_mask,
                                              batch.predict_index, batch.targets, batch.slot_mask)),
                   causal_prefix=batch.causal_prefix)
    logits = _response_logits(model, batch, packed=layout == "packed", debug=debug)
    token_logp = _selective_log_probs(logits, batch.targets)  # [M], canonical (b, k, j, t) order

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
