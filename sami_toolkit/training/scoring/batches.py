"""Model inputs for the two scoring layouts (spec §1.4), from the token ids of :mod:`.encoding`.

* **naive** — the reference code's layout (spec §1.4 step 5): C² rows ``prompt_k + response_j`` per query,
  right-padded.
* **packed** — one row ``[prompt_k, response_1, …, response_C]`` per (query, constitution) with a block-causal
  additive mask: each response sees prompt_k and its own earlier tokens only, and its position ids restart where
  the prompt ends, so every response token sees exactly the context and positions it has in the naive layout.

Both layouts list the scored tokens in the same canonical (b, k, j, t) order, so everything downstream of the
forward pass is layout-independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sami_toolkit.training.scoring.encoding import Encoded

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: test-only switches of :func:`~sami_toolkit.training.scoring.score_matrix`: force the packed layout, optionally
#: with a known silent bug (see :func:`packed_batch`)
DEBUG_MODES = frozenset({"force", "bool_mask", "one_zero_mask", "no_position_ids", "no_position_restart"})


@dataclass
class ModelBatch:
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

    def to(self, device: torch.device | str) -> "ModelBatch":
        return ModelBatch(*(t.to(device) for t in (self.input_ids, self.position_ids, self.attention_mask,
                                                   self.predict_index, self.targets, self.slot_mask)),
                          causal_prefix=self.causal_prefix)


def slot_mask(enc: Encoded) -> torch.Tensor:
    """``[B, C, C, R_max]``: True on the first n_j slots of response j (its scored tokens), in every row k."""
    import torch

    mask = torch.zeros(enc.batch, enc.c, enc.c, enc.r_max, dtype=torch.bool)
    for b in range(enc.batch):
        for j in range(enc.c):
            n = sum(enc.scored[b][j])
            mask[b, :, j, :n] = True
    return mask


def naive_batch(enc: Encoded) -> ModelBatch:
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
    return ModelBatch(input_ids, positions, attention, torch.tensor(predict, dtype=torch.long),
                      torch.tensor(targets, dtype=torch.long), slot_mask(enc))


@dataclass
class _PackedRows:
    """The packed layout's rows before they become tensors: ids, segment ids (0 = prompt, j + 1 = response j,
    -1 = padding), position ids, and the scored tokens' predicting positions and targets."""

    rows: list[list[int]]
    segments: list[list[int]]
    positions: list[list[int]]
    predict: list[int]
    targets: list[int]


def _packed_rows(enc: Encoded, debug: str | None) -> _PackedRows:
    out = _PackedRows([], [], [], [], [])
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
                        out.predict.append(n * width + (p - 1 if t == 0 else start + t - 1))
                        out.targets.append(tok)
                ids.extend(resp)
                seg.extend([j + 1] * len(resp))
                pos.extend(range(p, p + len(resp)) if debug != "no_position_restart"
                           else range(start, start + len(resp)))
            pad = width - len(ids)
            out.rows.append(ids + [enc.pad_id] * pad)
            out.segments.append(seg + [-1] * pad)
            out.positions.append(pos + [0] * pad)  # padding is never scored and only attends to itself
            n += 1
    return out


def _block_causal_mask(segments: list[list[int]], mask_dtype: torch.dtype, debug: str | None,
                       device: torch.device | str) -> torch.Tensor:
    """``[N, 1, T, T]`` additive mask: a token attends causally to the prompt (segment 0) and its own segment."""
    import torch

    seg_t = torch.tensor(segments, dtype=torch.long).to(device)  # [N, T]
    width = seg_t.shape[1]
    q_seg = seg_t[:, :, None]
    k_seg = seg_t[:, None, :]
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    keep = causal & ((k_seg == 0) | (k_seg == q_seg)) & (q_seg >= 0)
    # padding rows attend to themselves (no NaN rows)
    keep |= torch.eye(width, dtype=torch.bool, device=device) & (q_seg < 0)
    keep = keep.unsqueeze(1)  # [N, 1, T, T]
    if debug == "bool_mask":
        return keep
    if debug == "one_zero_mask":
        return keep.to(mask_dtype)
    mask = torch.zeros(keep.shape, dtype=mask_dtype, device=keep.device)
    mask.masked_fill_(~keep, torch.finfo(mask_dtype).min)
    return mask


def packed_batch(enc: Encoded, mask_dtype: torch.dtype, debug: str | None = None,
                 device: torch.device | str = "cpu") -> ModelBatch:
    """One row [prompt_k, response_1..C] per (query, k) with a block-causal additive mask (spec §1.2 scores,
    computed without repeating the prompt).

    ``debug`` builds the known silent failure modes (tests only): ``bool_mask`` (eager adds it as 0/1),
    ``one_zero_mask`` (the old float convention), ``no_position_ids``, ``no_position_restart``; ``force`` is
    the correct packed layout, used even where the allow-list would choose naive.

    The [N, 1, T, T] mask is built on ``device`` from the small segment-id tensor: on a GPU, building it on the
    host and copying it over cost more than the packed forward saved (measured on an H100, bf16, C = 2).
    """
    import torch

    packed = _packed_rows(enc, debug)
    mask = _block_causal_mask(packed.segments, mask_dtype, debug, device)
    # the known-bug modes exercise the masked attention path alone; the real layout splits off the shared prefix.
    # prompt + response_1 is causal too, but extending the split over it, or gathering each later response's keys
    # (prompt + itself) into small problems, was slower on the CPU flash kernel (docs/scoring.md, 2026-12-02)
    prefix = min(len(p) for row in enc.prompts for p in row) if debug in (None, "force") else 0
    return ModelBatch(torch.tensor(packed.rows, dtype=torch.long), torch.tensor(packed.positions, dtype=torch.long),
                      mask, torch.tensor(packed.predict, dtype=torch.long),
                      torch.tensor(packed.targets, dtype=torch.long), slot_mask(enc), prefix)
