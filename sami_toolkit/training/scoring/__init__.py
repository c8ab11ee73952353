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
plain causal sdpa, which kernels compute block-sparsely, and only the rest use the mask (:mod:`.attention`).

Both layouts apply the LM head only to response-predicting positions and take a selective log-softmax
(logsumexp + gather, with a fused backward), never a full ``[positions × vocab]`` log_softmax.

Tokenisation follows spec §10.12 and masking spec §1.4 (:mod:`.encoding`).

The package, one job per module:

==================  ==============================================================================
``options``         :class:`ScoringOptions` (part of the run config) and :class:`ScoreOutput`
``encoding``        tokenisation and the scored-token mask (shared with the vLLM scorer)
``layout``          the packed allow-list and the layout choice
``batches``         model inputs of the naive and packed layouts
``attention``       the prefix-split sdpa attention of the packed layout
``forward``         one forward pass, LM head on response-predicting positions only
``log_softmax``     the selective log-softmax with its fused backward
``matrix``          :func:`score_matrix` and :func:`score_token_ids`
==================  ==============================================================================

Torch is imported inside functions: :class:`ScoringOptions` is used by config validation at CLI start-up, so
importing this package costs pydantic only.
"""

from __future__ import annotations

from sami_toolkit.training.scoring.encoding import Encoded, encode
from sami_toolkit.training.scoring.layout import (
    PACKED_ATTN_IMPLEMENTATIONS,
    PACKED_MODEL_TYPES,
    choose_layout,
    packed_unsupported_reason,
)
from sami_toolkit.training.scoring.matrix import score_matrix, score_token_ids
from sami_toolkit.training.scoring.options import ScoreOutput, ScoringOptions

__all__ = [
    "PACKED_ATTN_IMPLEMENTATIONS", "PACKED_MODEL_TYPES", "Encoded", "ScoreOutput", "ScoringOptions",
    "choose_layout", "encode", "packed_unsupported_reason", "score_matrix", "score_token_ids",
]
