"""The ``mi-vllm`` evaluator: the core ``mi`` evaluator's MI metrics (spec §1.6), scored with vLLM.

The core ``mi`` evaluator scores the C×C matrices with transformers, one micro-batch at a time, which is the slow
part at paper scale (250 queries × 4 constitutions × 4 responses × ~600 tokens, per checkpoint).  This evaluator
*is* the core evaluator — same constitutions, prompts, random principle shuffles, per-query file and metrics — with
one method replaced: :meth:`VLLMMIEvaluator.scoring_session` reads every ``log p(y_j | prompt(x, c_k))`` from
vLLM's ``prompt_logprobs`` in batched calls (:func:`sami_kit_vllm.scorer.score_matrix_vllm`).

Generation uses the run's sampler (``context.sampler``), as the core does; when that sampler is the ``vllm``
sampler its already loaded engine is reused for scoring, so the checkpoint is loaded on the GPU once.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pydantic import Field

from sami_toolkit.evaluation.mi import MIEvaluator, MIProtocolOptions, ScoringSession

from .engine import VLLMEngineOptions

if TYPE_CHECKING:  # pragma: no cover
    import torch


class VLLMMIEvaluator(MIEvaluator):
    """MI of responses and constitutions (spec §1.6) like the core 'mi' evaluator, scored with vLLM (GPU)."""

    name = "mi-vllm"
    description = "MI of responses and constitutions (spec §1.6), the C×C matrices scored with vLLM (GPU)."
    scorer = "vllm"

    class Options(VLLMEngineOptions, MIProtocolOptions):
        chunk_size: int = Field(2048, ge=1, description="Scoring requests per LLM.generate call.")

    options: "VLLMMIEvaluator.Options"

    @contextlib.contextmanager
    def scoring_session(self, context: Any) -> Iterator[ScoringSession]:
        """Score with the vLLM sampler's engine when the run samples with vLLM (the checkpoint is already on the
        GPU), else with an engine of our own that is closed afterwards."""
        from .engine import VLLMEngine
        from .sampler import VLLMSampler
        from .scorer import score_matrix_vllm

        sampler = context.sampler
        if isinstance(sampler, VLLMSampler):
            engine, owned = sampler.engine, False  # reuse the loaded checkpoint
        else:
            if hasattr(sampler, "close"):
                sampler.close()  # free the sampler's memory before vLLM takes the GPU
            engine, owned = VLLMEngine(self.options), True
        try:
            engine.get(context.model)

            def score(prompts: list[list[str]], responses: list[list[str]],
                      advance: Callable[[int], None]) -> "torch.Tensor":
                requests_per_query = max(1, len(prompts[0]) * len(responses[0])) if prompts else 1
                done = [0]

                def on_requests(n: int) -> None:  # vLLM reports (k, j) requests; progress counts queries
                    done[0] += n
                    advance(done[0] // requests_per_query - (done[0] - n) // requests_per_query)

                return score_matrix_vllm(engine, prompts, responses, reduction="sum",
                                         max_length=self.options.max_length, chunk_size=self.options.chunk_size,
                                         progress=on_requests)

            yield ScoringSession(score, engine.tokenizer(), f"vllm {self.options.dtype}")
        finally:
            if owned:
                engine.close()
            elif hasattr(sampler, "close"):
                sampler.close()  # the loop trains next: give the GPU back
