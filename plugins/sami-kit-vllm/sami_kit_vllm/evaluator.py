"""The ``mi-vllm`` evaluator: the core ``mi`` evaluator's MI metrics (spec §1.6), scored with vLLM.

The core ``mi`` evaluator scores the C×C matrices with transformers, one micro-batch at a time, which is the slow
part at paper scale (250 queries × 4 constitutions × 4 responses × ~600 tokens, per checkpoint).  This evaluator
produces the same metrics and the same per-query file, in the same order and with the same random principle
shuffles (so both give the same numbers for the same responses), but reads every ``log p(y_j | prompt(x, c_k))``
from vLLM's ``prompt_logprobs`` in one batched call (:func:`sami_kit_vllm.scorer.score_matrix_vllm`).

Generation uses the run's sampler (``context.sampler``), as the core does; when that sampler is the ``vllm``
sampler its already loaded engine is reused for scoring, so the checkpoint is loaded on the GPU once.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from sami_toolkit.components import Evaluator
from sami_toolkit.errors import ConfigError

from .engine import VLLMEngineOptions

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: the per-query estimators, named as the core ``mi`` evaluator names them (sami_toolkit.evaluation.METRIC_KEYS)
ESTIMATORS: tuple[str, ...] = ("mi_paper", "mi_infonce", "mi_infonce_constitutions", "mi_infonce_responses")


def mi_estimates(scores: "torch.Tensor") -> dict[str, "torch.Tensor"]:
    """Per-query MI estimates from sum-log-prob matrices ``[B, C, C]`` (rows = constitutions), spec §1.6:
    the paper's estimator (not a bound) and the InfoNCE bounds ``log C − L`` for each loss variant."""
    from sami_toolkit.losses import infonce_mi, paper_mi

    s = scores.float()
    return {"mi_paper": paper_mi(s, reduction="none"),
            "mi_infonce": infonce_mi(s, variant="both", reduction="none"),
            "mi_infonce_constitutions": infonce_mi(s, variant="constitutions", reduction="none"),
            "mi_infonce_responses": infonce_mi(s, variant="responses", reduction="none")}


def mi_summary(scores: "torch.Tensor") -> dict[str, Any]:
    """Mean ± SEM of every estimator over the queries of ``scores`` (``<key>`` and ``<key>_sem``)."""
    from sami_toolkit.stats import mean_sem

    out: dict[str, Any] = {}
    for key, values in mi_estimates(scores).items():
        out[key], out[f"{key}_sem"] = mean_sem([float(v) for v in values])
    return out


class VLLMMIEvaluator(Evaluator):
    """MI of responses and constitutions (spec §1.6) like the core 'mi' evaluator, scored with vLLM (GPU)."""

    name = "mi-vllm"

    class Options(VLLMEngineOptions):
        principle_names: list[str] | None = Field(None, description="Principles whose 2^k constitutions are "
                                                                    "contrasted (default: every principle).")
        max_length: int | None = Field(None, ge=2, description="Truncate prompt+response to this many tokens "
                                                               "(keep it below the engine's max_model_len).")
        shuffle_principles: bool = Field(True, description="Shuffle principle order per prompt (spec §1.6 step 3).")
        file_name: str = Field("mi.jsonl", description="Per-query results file under the context's out_dir.")
        chunk_size: int = Field(2048, ge=1, description="Scoring requests per LLM.generate call.")

    options: "VLLMMIEvaluator.Options"

    def evaluate(self, context: Any) -> dict[str, Any]:
        from sami_toolkit.constitutions import all_constitutions
        from sami_toolkit.evaluation import (progress_label, with_progress, generate, generation_prompts,
                                             resolve_templates, shuffled, write_jsonl)
        from sami_toolkit.prompts import build_prompt, format_question
        from sami_toolkit.stats import mean_sem

        from .engine import VLLMEngine
        from .sampler import VLLMSampler
        from .scorer import score_matrix_vllm

        if context.principle_set is None:
            raise ConfigError("the 'mi-vllm' evaluator needs a principle set (its constitutions are contrasted)")
        if not context.queries:
            raise ConfigError("the 'mi-vllm' evaluator got no queries")
        o = self.options
        pset = context.principle_set
        templates = resolve_templates(context.task, context.templates)
        constitutions = all_constitutions(pset, o.principle_names)
        texts = [c.render(pset) for c in constitutions]
        C = len(texts)
        # The random stream is consumed exactly as the core 'mi' evaluator consumes it (generation prompts for
        # every query first, then scoring prompts query by query), so both evaluators shuffle identically.
        rng = random.Random(context.seed)
        queries = list(context.queries)

        # spec §1.6 steps 1-2: one greedy response per (query, constitution) from π_η, generation prompt
        gen_const = [shuffled(t, rng, o.shuffle_principles) for _ in queries for t in texts]
        prompts = generation_prompts(templates, [q for q in queries for _ in texts], gen_const)
        flat = generate(context.sampler, context.model, prompts, task=context.task, templates=templates,
                        label=progress_label(context, "MI: generating"))
        responses = [flat[i * C:(i + 1) * C] for i in range(len(queries))]

        # step 3: every (constitution k, response j) scored with the TRAINING prompt, sum log-probs, same model
        sampler = context.sampler
        if isinstance(sampler, VLLMSampler):
            engine, owned = sampler.engine, False  # reuse the loaded checkpoint
        else:
            if hasattr(sampler, "close"):
                sampler.close()  # free the sampler's memory before vLLM takes the GPU
            engine, owned = VLLMEngine(o), True
        usable = [i for i, rs in enumerate(responses) if all(r.strip() for r in rs)]
        skipped = [q.id for i, q in enumerate(queries) if i not in set(usable)]
        rows: list[dict[str, Any]] = []
        try:
            engine.get(context.model)
            if usable:
                score_prompts = [[build_prompt(templates.training, constitution=shuffled(t, rng, o.shuffle_principles),
                                               question=format_question(templates, queries[i].text))
                                  for t in texts] for i in usable]
                score_responses = [responses[i] for i in usable]
                scores = with_progress(
                    lambda cb: score_matrix_vllm(engine, score_prompts, score_responses, reduction="sum",
                                                 max_length=o.max_length, chunk_size=o.chunk_size, progress=cb),
                    len(usable) * C * C, progress_label(context, "MI: scoring (vLLM)"))
                est = mi_estimates(scores)
                tokenizer = engine.tokenizer()
                for b, i in enumerate(usable):
                    lengths = [len(tokenizer.encode(r)) for r in responses[i]]
                    rows.append({"id": queries[i].id, **{k: float(v[b]) for k, v in est.items()},
                                 "length_tokens": lengths[0], "length_tokens_all": lengths,
                                 "constitutions": [c.label() for c in constitutions],
                                 "responses": responses[i], "scores": scores[b].tolist()})
        finally:
            if owned:
                engine.close()
            elif hasattr(sampler, "close"):
                sampler.close()  # the loop trains next: give the GPU back
        out_path = Path(context.out_dir) / o.file_name
        write_jsonl(out_path, rows)

        result: dict[str, Any] = {"mi_n_queries": len(rows), "mi_n_constitutions": C,
                                  "mi_skipped_queries": len(skipped), "mi_file": str(out_path),
                                  "mi_scorer": "vllm"}
        for key in ESTIMATORS:
            result[key], result[f"{key}_sem"] = mean_sem([r[key] for r in rows])
        result["mean_length_tokens"], result["mean_length_tokens_sem"] = mean_sem([r["length_tokens"] for r in rows])
        if skipped:
            result["mi_note"] = (f"{len(skipped)} query(ies) skipped: an empty response cannot be scored "
                                 f"({', '.join(skipped[:5])}{'...' if len(skipped) > 5 else ''})")
        return result
