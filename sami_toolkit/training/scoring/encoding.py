"""Tokenisation for scoring: prompt and response ids, and which response tokens count (spec §1.4, §10.12).

Prompt and response are tokenised separately (no special tokens) and their ids concatenated, so a tokenizer that
merges across the ``Summary:``/response boundary cannot shift the mask.  The tokenizer's BOS is put once at the
start of the prompt (``add_bos``).  Every EOS id inside a response is not scored; no EOS is appended (one would be
masked and nothing follows it, so it could not change a score).

Shared with the vLLM scorer (``sami_kit_vllm.scorer``), so both engines score exactly the same token ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from sami_toolkit.training.scoring.options import ScoringOptions


@dataclass
class Encoded:
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

    @property
    def longest_sequence(self) -> int:
        """The longest prompt + response pairing (what a sliding window must cover)."""
        return max(len(p) + len(r) for b in range(self.batch) for p in self.prompts[b] for r in self.responses[b])


def token_id(value: Any) -> int | None:
    """A tokenizer's special-token id as one int (some tokenizers give a list of EOS ids: the first counts)."""
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return None if value is None else int(value)


def _check_shapes(prompts: Sequence[Sequence[str]], responses: Sequence[Sequence[str]]) -> int:
    """Validate the ``[B][C]`` shape of both inputs (a clear ValueError, not a shape error later); returns C."""
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
    return c


def _check_responses(b: int, responses: list[list[int]], scored: list[list[bool]]) -> None:
    for j, (r, s) in enumerate(zip(responses, scored)):
        if not r:
            raise ValueError(f"score_matrix: response {j} of query {b} is empty (0 tokens); filter out empty "
                             f"responses before scoring")
        if not any(s):
            raise ValueError(f"score_matrix: response {j} of query {b} has no token to score (only EOS); "
                             f"filter it out before scoring")


def _prompt_ids(p: list[int], bos: int | None, longest: int, options: ScoringOptions, b: int, k: int) -> list[int]:
    """BOS once at the start, then the prompt, truncated from the left to fit ``max_length``."""
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
    return p


def encode(tokenizer: Any, prompts: Sequence[Sequence[str]], responses: Sequence[Sequence[str]],
           options: ScoringOptions) -> Encoded:
    """Tokenise prompts and responses separately (spec §10.12) and work out the scored response tokens (§1.4)."""
    c = _check_shapes(prompts, responses)
    flat_p = [p for ps in prompts for p in ps]
    flat_r = [r for rs in responses for r in rs]
    ids_p = tokenizer(flat_p, add_special_tokens=False)["input_ids"]
    ids_r = tokenizer(flat_r, add_special_tokens=False)["input_ids"]
    bos = token_id(getattr(tokenizer, "bos_token_id", None)) if options.add_bos else None
    eos = token_id(getattr(tokenizer, "eos_token_id", None))
    pad = token_id(getattr(tokenizer, "pad_token_id", None))
    pad_id = pad if pad is not None else (eos if eos is not None else 0)

    out_p: list[list[list[int]]] = []
    out_r: list[list[list[int]]] = []
    out_s: list[list[list[bool]]] = []
    for b in range(len(prompts)):
        resp = [list(ids_r[b * c + j]) for j in range(c)]
        scored = [[tok != eos for tok in r] for r in resp]
        _check_responses(b, resp, scored)
        longest = max(len(r) for r in resp)
        out_p.append([_prompt_ids(list(ids_p[b * c + k]), bos, longest, options, b, k) for k in range(c)])
        out_r.append(resp)
        out_s.append(scored)
    return Encoded(out_p, out_r, out_s, pad_id)


def encode_token_ids(prompt_ids: Sequence[Sequence[Sequence[int]]], response_ids: Sequence[Sequence[Sequence[int]]],
                     *, eos_token_id: int | None, pad_token_id: int) -> Encoded:
    """Already tokenised input as :class:`Encoded`: ``prompt_ids[b][k]`` must already hold any BOS; response tokens
    equal to ``eos_token_id`` are not scored (spec §1.4)."""
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
    return Encoded(prompts, responses, scored, pad_token_id)
