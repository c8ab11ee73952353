"""The MI evaluators (spec §1.6): ``mi`` — every constitution of the set, one greedy response each, a C×C matrix
of **sum** log-probs under the evaluated model with the **training** prompt, and four estimators per query (the
paper's ``mi_paper``, not a bound; ``mi_infonce``, two-sided; ``mi_infonce_constitutions``, the headline, a valid
lower bound on I(Y; C | x); ``mi_infonce_responses``) plus response lengths, each as mean ± SEM — and
``mi-heldout``, the same on fixed base-model responses.

Documented for plugins: a faster scorer subclasses :class:`MIEvaluator` and overrides only
:meth:`MIEvaluator.scoring_session` (the vLLM plugin's ``mi-vllm`` does), reusing :class:`MIProtocolOptions`
and :class:`ScoringSession`.  Metric keys and labels: :mod:`sami_toolkit.core.metrics`.  Heavy imports (torch,
transformers) happen inside methods.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Sequence

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions, Evaluator
from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.io import atomic_write_jsonl
from sami_toolkit.evaluation.context import EvalContext, progress_label
from sami_toolkit.sampling.generation import (
    cached_generate,
    chat_prompts,
    generate,
    generation_prompts,
    resolve_templates,
    shuffled,
    with_progress,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from sami_toolkit.core.records import Query
    from sami_toolkit.text.constitutions import Constitution
    from sami_toolkit.text.prompts import PromptTemplates

#: the per-query MI estimators of spec §1.6, in the order the ``mi`` evaluators report them
MI_ESTIMATORS: tuple[str, ...] = ("mi_paper", "mi_infonce", "mi_infonce_constitutions", "mi_infonce_responses")

#: ``score(prompts, responses, advance) -> [B, C, C]`` sum log-probs; ``advance(n)`` reports n queries scored
ScoreFn = Callable[[list[list[str]], list[list[str]], Callable[[int], None]], "torch.Tensor"]


@dataclass(frozen=True)
class ScoringSession:
    """What :meth:`MIEvaluator.scoring_session` yields: the scorer, the tokenizer that counts response lengths,
    and the precision the scores are computed in (recorded as ``mi_precision``: with ``autocast: auto`` it
    depends on the machine, so the metrics say which it was)."""

    score: ScoreFn
    tokenizer: Any
    precision: str


def mi_estimates(scores: "torch.Tensor") -> dict[str, "torch.Tensor"]:
    """Per-query MI estimates from sum-log-prob matrices ``[B, C, C]`` (rows = constitutions), spec §1.6:
    the paper's estimator (not a bound) and the InfoNCE bounds ``log C − L`` for each loss variant."""
    from sami_toolkit.training.losses import infonce_mi, paper_mi

    s = scores.float()
    return {"mi_paper": paper_mi(s, reduction="none"),
            "mi_infonce": infonce_mi(s, variant="both", reduction="none"),
            "mi_infonce_constitutions": infonce_mi(s, variant="constitutions", reduction="none"),
            "mi_infonce_responses": infonce_mi(s, variant="responses", reduction="none")}


def mi_summary(scores: "torch.Tensor") -> dict[str, Any]:
    """Mean ± SEM of every estimator over the queries of ``scores`` (``<key>`` and ``<key>_sem``)."""
    from sami_toolkit.evaluation.stats import mean_sem

    out: dict[str, Any] = {}
    for key, values in mi_estimates(scores).items():
        out[key], out[f"{key}_sem"] = mean_sem([float(v) for v in values])
    return out


class MICommonOptions(ComponentOptions):
    """What every MI evaluator shares, whichever constitutions it contrasts (spec §1.6)."""

    max_length: int | None = Field(None, ge=2, description="Truncate prompt+response to this many tokens.")
    shuffle_principles: bool = Field(True, description="Shuffle principle order per prompt (spec §1.6 step 3).")
    shuffle_per_entry: bool = Field(
        False, description="Shuffle the principle order independently for every entry s_jk of the score matrix, "
                           "as the dev MI script did (spec §1.6 step 3, §10.13); costs C scoring passes. "
                           "false: one shuffled prompt per constitution, shared by the C responses it scores.")
    prompt: Literal["generation", "generation_cot", "training"] = Field(
        "generation", description="Template the responses are generated with: generation (Exp. 1–2), "
                                  "generation_cot (Exp. 3 CoT, spec §7.2: the final answer after 'Summary:' is "
                                  "kept) or training (Exp. 3 without CoT); scoring always uses the training "
                                  "prompt (spec §1.6).")
    file_name: str = Field("mi.jsonl", description="Per-query results file under the context's out_dir.")
    responses_from: Literal["model", "base"] = Field(
        "model", description="model: responses generated by the evaluated checkpoint (the paper's protocol, "
                             "spec §1.6). base: responses of the base model (generated once, cached), so only "
                             "the scorer changes between checkpoints.")
    query_subset: str | None = Field(None, description="Only queries whose meta 'subset' is this (HH's combined "
                                     "pool: helpful-base / harmless-base, reported separately as in spec §9.1); "
                                     "keys and file get the prefix '<subset>_' (helpful_, harmless_).")


def subset_prefix(subset: str | None) -> str:
    """The key prefix of a query subset: ``helpful-base`` -> ``helpful_``; none -> ``""``."""
    return f"{subset.removesuffix('-base').replace('-', '_')}_" if subset else ""


class MIProtocolOptions(MICommonOptions):
    """What the MI evaluators measure (spec §1.6), whatever scores the matrices."""

    principle_names: list[str] | None = Field(None, description="Principles whose 2^k constitutions are "
                                                                "contrasted (default: every principle).")
    constitutions: Literal["all", "extremes"] = Field(
        "all", description="all: every 2^k combination of the principles (C_eval = 4 for two, spec §1.6). "
                           "extremes: the all-positive and all-negative constitutions, the pair that the "
                           "positive_vs_negative strategy trains on (spec §5.3).")


class TransformersScoringOptions(ComponentOptions):
    """How the built-in (transformers) scorer runs."""

    batch_size: int = Field(2, ge=1, description="Queries per scoring micro-batch (each is C×C sequences).")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="Scoring precision (bfloat16 is "
                                                                         "faster on CPUs with bf16).")
    autocast: bool | Literal["auto"] = Field(
        "auto", description="Score under bfloat16 autocast with float32 weights (scores stay float32): true, "
                            "false, or auto = where bf16 is fast (GPUs with bf16, CPUs with AVX512-BF16/AMX: "
                            "about 3x faster there; bf16 is ~15x slower on AVX2-only CPUs).")
    device: str = Field("auto", description="Torch device for scoring: auto (CUDA when available), cpu, "
                                            "cuda, cuda:1...")


class MIEvaluator(Evaluator):
    """Mutual information of responses and constitutions (spec §1.6): paper estimator and InfoNCE bounds.

    The protocol (which constitutions, which prompts, the random principle shuffles, the per-query file and the
    metrics) lives in :meth:`evaluate`; *how* the C×C matrices are scored is :meth:`scoring_session`, the one
    method a faster scorer overrides (the vLLM plugin's ``mi-vllm`` does), so both give the same numbers for the
    same responses."""

    name = "mi"
    description = "MI of responses and constitutions (spec §1.6): InfoNCE bounds and the paper's estimator."
    #: recorded as ``mi_scorer`` in the metrics
    scorer = "transformers"
    #: put before every metric key (``mi-heldout`` uses ``heldout_``), so two MI evaluators can run side by side
    metric_prefix = ""
    #: evaluate the instruct baseline (``eval.baseline_model``) under its own chat template (``mi-instruct``)
    instruct: bool = False

    class Options(TransformersScoringOptions, MIProtocolOptions):
        pass

    def uses_autocast(self, device: str) -> bool:
        """Whether scoring on ``device`` runs under bf16 autocast: ``autocast: auto`` turns it on for float32
        weights where bf16 is fast, the same rule as the trainers' ``precision: auto``."""
        if self.options.autocast != "auto":
            return bool(self.options.autocast)
        from sami_toolkit.models.devices import bf16_is_fast

        return self.options.dtype == "float32" and bf16_is_fast(device)

    @contextlib.contextmanager
    def scoring_session(self, context: EvalContext) -> Iterator[ScoringSession]:
        """Load the evaluated model for scoring; yield a :class:`ScoringSession` and free the model afterwards.

        Its ``score`` returns the ``[B, C, C]`` matrices of **sum** log-probs (spec §1.4) of every response under
        every prompt; its tokenizer counts response lengths."""
        import torch

        from sami_toolkit.models.devices import resolve_auto_device
        from sami_toolkit.models.loading import load_model, load_tokenizer
        from sami_toolkit.training.scoring import ScoringOptions, score_matrix

        if hasattr(context.sampler, "close"):
            context.sampler.close()  # free the sampler's copy of the model first
        device = resolve_auto_device(self.options.device)
        tokenizer = load_tokenizer(context.model)
        model = load_model(context.model, dtype=self.options.dtype, device=device)
        model.eval()
        options = ScoringOptions(reduction="sum", max_length=self.options.max_length)
        bs = self.options.batch_size
        use_autocast = self.uses_autocast(device)

        def score(prompts: list[list[str]], responses: list[list[str]],
                  advance: Callable[[int], None]) -> "torch.Tensor":
            parts = []
            for start in range(0, len(prompts), bs):
                autocast = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
                            if use_autocast else contextlib.nullcontext())
                with torch.no_grad(), autocast:
                    parts.append(score_matrix(model, tokenizer, prompts[start:start + bs],
                                              responses[start:start + bs], options).float().cpu())
                advance(len(parts[-1]))
            return torch.cat(parts)

        try:
            yield ScoringSession(score, tokenizer, "bf16-autocast" if use_autocast else self.options.dtype)
        finally:
            model = None  # free the weights before the next stage (the loop trains next)

    def check_plan(self, pset: Any, templates: "PromptTemplates", *, baseline_model: str | None = None) -> None:
        """Raise a ConfigError now for what would fail at the first evaluation: the generation prompt (a CoT
        prompt needs the task's CoT template), the instruct template and model, the principle split."""
        from sami_toolkit.text.prompts import sampling_template

        sampling_template(templates, self.options.prompt)
        if self.instruct and not templates.instruct:
            raise ConfigError("the task has no instruct template (spec §7.4)")
        if self.instruct and not baseline_model:
            raise ConfigError("it measures the instruct baseline but no eval.baseline_model is set",
                              hint="set eval.baseline_model (spec §7.4: mistralai/Mistral-7B-Instruct-v0.1)")
        split = getattr(self.options, "principles", None)
        if split is not None:
            from sami_toolkit.text.constitutions import principle_split

            names = principle_split(pset, split)
            if len(names) < self.options.k:
                raise ConfigError(f"principles: {split} has {len(names)} principle(s), fewer than k={self.options.k}")

    def query_constitutions(self, context: EvalContext, queries: list["Query"]) -> list[list["Constitution"]]:
        """The C_eval constitutions contrasted for each query: here the same for every query — all 2^k
        combinations of ``principle_names`` (C_eval = 4 for two, spec §1.6), or the two extremes."""
        from sami_toolkit.text.constitutions import all_constitutions

        assert context.principle_set is not None
        constitutions = all_constitutions(context.principle_set, self.options.principle_names)
        if self.options.constitutions == "extremes":
            constitutions = [constitutions[0], constitutions[-1]]
        return [constitutions for _ in queries]

    def evaluate(self, context: EvalContext) -> dict[str, Any]:
        if context.principle_set is None:
            raise ConfigError(f"the '{self.name}' evaluator needs a principle set (its constitutions are contrasted)")
        if not context.queries:
            raise ConfigError(f"the '{self.name}' evaluator got no queries")
        if self.instruct:
            if not context.baseline_model:
                raise ConfigError(f"the '{self.name}' evaluator measures the instruct baseline but no "
                                  "eval.baseline_model is set", hint="set eval.baseline_model (spec §7.4: "
                                  "mistralai/Mistral-7B-Instruct-v0.1)")
            import dataclasses

            context = dataclasses.replace(context, model=context.baseline_model)
        o = self.options
        if o.query_subset is not None:
            chosen = [q for q in context.queries if q.meta.get("subset") == o.query_subset]
            if not chosen:
                raise ConfigError(f"the '{self.name}' evaluator: no held-out query has subset '{o.query_subset}'",
                                  hint="check data.eval_source (a mix source labels each query with its subset)")
            import dataclasses

            context = dataclasses.replace(context, queries=chosen)
        prefix = subset_prefix(o.query_subset) + self.metric_prefix
        pset = context.principle_set
        templates = resolve_templates(context.task, context.templates)
        queries = list(context.queries)
        per_query = self.query_constitutions(context, queries)
        texts = [[c.render(pset) for c in cs] for cs in per_query]
        labels = [[c.label() for c in cs] for cs in per_query]
        # one random stream: generation prompts for every query first, then scoring prompts query by query
        rng = random.Random(context.seed)
        responses = self._responses(context, templates, queries, texts, rng)
        skipped = [q.id for q, rs in zip(queries, responses) if not all(r.strip() for r in rs)]
        rows, precision = self._score(context, templates, queries, responses, texts, rng, labels)
        out_path = atomic_write_jsonl(Path(context.out_dir) / f"{subset_prefix(o.query_subset)}{o.file_name}", rows)
        result = self._summary(rows, len(texts[0]), skipped, precision, out_path)
        return {f"{prefix}{key}": value for key, value in result.items()}

    def _instruct_prompts(self, context: EvalContext, templates: "PromptTemplates", queries: Sequence["Query"],
                          constitutions: Sequence[str]) -> list[str]:
        """The instruct baseline's prompts (spec §1.6, §7.4): the task's instruct message in the model's chat
        template (the raw message when it has none)."""
        if not templates.instruct:
            raise ConfigError(f"the '{self.name}' evaluator needs the task's instruct template (spec §7.4)")
        messages = generation_prompts(templates, queries, constitutions, template=templates.instruct,
                                      instruct=True)
        return chat_prompts(context.model, messages)[0]

    def _responses(self, context: EvalContext, templates: "PromptTemplates", queries: list["Query"],
                   texts: list[list[str]], rng: random.Random) -> list[list[str]]:
        """Steps 1-2 of spec §1.6: one greedy response per (query, constitution) with the generation prompt (or
        the CoT / training prompt, option ``prompt``), from the evaluated model, or from the base model (the same
        at every iteration: generated once and cached)."""
        from sami_toolkit.text.postprocess import postprocess_response, postprocess_sampled
        from sami_toolkit.text.prompts import sampling_template

        o = self.options
        gen_const = [shuffled(t, rng, o.shuffle_principles) for ts in texts for t in ts]
        flat_queries = [q for q, ts in zip(queries, texts) for _ in ts]
        if self.instruct:
            prompts = self._instruct_prompts(context, templates, flat_queries, gen_const)
            plain = False
        else:
            prompts = generation_prompts(templates, flat_queries, gen_const,
                                         template=sampling_template(templates, o.prompt))
            plain = o.prompt == "generation"  # the default post-processing; otherwise applied below
        if o.responses_from == "base" and not self.instruct:
            if not context.base_model:
                raise ConfigError(f"the '{self.name}' evaluator scores base-model responses but the context has "
                                  "no base model", hint="set responses_from: model")
            cache_dir = Path(context.options.get("cache_dir") or context.out_dir)
            flat = cached_generate(cache_dir, context.sampler, context.base_model, prompts, task=context.task,
                                   templates=templates, label=progress_label(context, "MI: base responses"),
                                   postprocess=plain)
        else:
            flat = generate(context.sampler, context.model, prompts, task=context.task, templates=templates,
                            label=progress_label(context, "MI: generating"), postprocess=plain)
        if self.instruct:
            flat = [postprocess_response(context.task, r, templates, instruct=True) for r in flat]
        elif not plain:
            flat = [postprocess_sampled(context.task, r, templates, o.prompt) for r in flat]
        out, start = [], 0
        for ts in texts:
            out.append(flat[start:start + len(ts)])
            start += len(ts)
        return out

    def _score_prompts(self, context: EvalContext, templates: "PromptTemplates", query: "Query", texts: list[str],
                       rng: random.Random) -> list[str]:
        """One scoring prompt per constitution: the TRAINING prompt (spec §1.6 step 3), or for the instruct
        baseline its own chat-template prompt; each with a freshly shuffled principle order."""
        from sami_toolkit.text.prompts import build_prompt, format_question

        shuffled_texts = [shuffled(t, rng, self.options.shuffle_principles) for t in texts]
        if self.instruct:
            return self._instruct_prompts(context, templates, [query] * len(texts), shuffled_texts)
        return [build_prompt(templates.training, constitution=t, question=format_question(templates, query.text))
                for t in shuffled_texts]

    def _score(self, context: EvalContext, templates: "PromptTemplates", queries: list["Query"],
               responses: list[list[str]], texts: list[list[str]], rng: random.Random,
               labels: list[list[str]]) -> tuple[list[dict[str, Any]], str]:
        """Step 3 of spec §1.6: score every (constitution k, response j) with the TRAINING prompt, sum log-probs,
        under the evaluated model; returns the per-query rows (queries with an empty response are left out) and
        the scoring precision.  With ``shuffle_per_entry`` every entry s_jk gets its own principle order (spec
        §10.13): column j of the matrix comes from the j-th of C scoring passes, each with fresh shuffles."""
        usable = [i for i, rs in enumerate(responses) if all(r.strip() for r in rs)]
        rows: list[dict[str, Any]] = []
        with self.scoring_session(context) as session:
            if usable:
                label = progress_label(context, f"MI: scoring ({self.scorer})")
                kept = [responses[i] for i in usable]
                if self.options.shuffle_per_entry:
                    import torch

                    C = len(texts[usable[0]])
                    passes = [[self._score_prompts(context, templates, queries[i], texts[i], rng) for i in usable]
                              for _ in range(C)]
                    columns = with_progress(lambda advance: [session.score(passes[j], kept, advance)[:, :, j]
                                                             for j in range(C)],
                                            len(usable) * C, label)
                    scores = torch.stack(columns, dim=-1)
                else:
                    score_prompts = [self._score_prompts(context, templates, queries[i], texts[i], rng)
                                     for i in usable]
                    scores = with_progress(lambda advance: session.score(score_prompts, kept, advance),
                                           len(usable), label)
                est = mi_estimates(scores)
                for b, i in enumerate(usable):
                    lengths = [len(session.tokenizer.encode(r)) for r in responses[i]]
                    rows.append({"id": queries[i].id, "query": queries[i].text,
                                 **{k: float(v[b]) for k, v in est.items()},
                                 "length_tokens": lengths[0], "length_tokens_all": lengths,
                                 "constitutions": labels[i], "responses": responses[i], "scores": scores[b].tolist()})
        return rows, session.precision

    def _summary(self, rows: list[dict[str, Any]], n_constitutions: int, skipped: list[str], precision: str,
                 out_path: Path) -> dict[str, Any]:
        """Step 5 of spec §1.6: mean ± SEM over the queries of every estimator and of the response length."""
        from sami_toolkit.evaluation.stats import mean_sem

        result: dict[str, Any] = {"mi_n_queries": len(rows), "mi_n_constitutions": n_constitutions,
                                  "mi_skipped_queries": len(skipped), "mi_file": str(out_path),
                                  "mi_scorer": self.scorer, "mi_precision": precision}
        for key in MI_ESTIMATORS:
            result[key], result[f"{key}_sem"] = mean_sem([r[key] for r in rows])
        # response length of the all-positive constitution (constitution 0, spec §8.6), in tokens
        result["mean_length_tokens"], result["mean_length_tokens_sem"] = mean_sem([r["length_tokens"] for r in rows])
        if skipped:
            result["mi_note"] = (f"{len(skipped)} query(ies) skipped: an empty response cannot be scored "
                                 f"({', '.join(skipped[:5])}{'...' if len(skipped) > 5 else ''})")
        return result


class HeldOutMIEvaluator(MIEvaluator):
    """The training objective on held-out queries: does the checkpoint tell the constitutions apart?

    The paper's MI (``mi``) regenerates every response with the checkpoint, so it moves only once training has
    changed what the model *writes*. This evaluator keeps the responses fixed — the base model's, under the
    all-positive and all-negative constitutions that ``positive_vs_negative`` trains on — and lets only the scorer
    change, like a validation loss. Metrics are the ``mi`` evaluator's with the prefix ``heldout_`` (the headline
    is ``heldout_mi_infonce_constitutions``)."""

    name = "mi-heldout"
    description = ("Held-out MI with fixed base-model responses (a validation version of the SAMI objective): "
                   "keys heldout_mi_*.")
    metric_prefix = "heldout_"

    class Options(MIEvaluator.Options):
        file_name: str = Field("mi-heldout.jsonl", description="Per-query results file under the context's "
                                                               "out_dir.")
        responses_from: Literal["model", "base"] = Field("base", description="Where responses come from "
                                                                             "(see the 'mi' evaluator).")
        constitutions: Literal["all", "extremes"] = Field("extremes", description="Which constitutions are "
                                                                                  "contrasted (see 'mi').")




class InstructMIEvaluator(MIEvaluator):
    """The instruct baseline's MI (the paper's dashed reference lines, spec §1.6): ``eval.baseline_model``
    generates and is scored under **its own chat-template prompt** (the task's instruct message, spec §7.4), with
    the constitutions of ``mi``.  Keys are the ``mi`` keys with the prefix ``instruct_``; the value does not
    depend on the iteration, so a run computes it once (at the first evaluation) and copies it afterwards."""

    name = "mi-instruct"
    description = "MI of the instruct baseline under its own chat template (spec §1.6 dashed lines): instruct_mi_*."
    metric_prefix = "instruct_"
    instruct = True

    class Options(MIEvaluator.Options):
        file_name: str = Field("mi-instruct.jsonl", description="Per-query results file under the context's "
                                                                "out_dir.")

    def evaluate(self, context: EvalContext) -> dict[str, Any]:
        from sami_toolkit.core.io import atomic_write_json, hash_data, read_json

        cache_dir = context.options.get("cache_dir")
        key = None
        if cache_dir:
            key = Path(cache_dir) / "mi-instruct-{}.json".format(hash_data(
                context.baseline_model, self.options.model_dump(mode="json"),
                [[q.id, q.text] for q in context.queries], context.seed))
            cached = read_json(key)
            if isinstance(cached, dict):
                return cached
        result = super().evaluate(context)
        if key is not None:
            atomic_write_json(key, result)
        return result


class SampledMIOptions(TransformersScoringOptions, MICommonOptions):
    """Options of ``mi-sampled`` (Exp. 3): which principles the per-query constitution is drawn from."""

    principles: Literal["id", "ood", "all"] = Field(
        "id", description="id: the set's train_principles (in distribution), ood: its held_out_principles "
                          "(spec §6.4, §8.1), all: every principle.")
    k: int = Field(2, ge=1, description="Principles per sampled constitution (2 in Exp. 3, spec §5.3).")
    file_name: str | None = Field(None, description="Per-query results file (default mi-<principles>.jsonl).")


class SampledMIEvaluator(MIEvaluator):
    """Exp. 3's MI (spec §1.6 step 1, §5.3): per query one sampled constitution — ``k`` principles of the ID or
    OOD split, each randomly as definition or antithesis — and its complement, so C_eval = 2.  The constitution
    of a query is the one the ``win-rate`` evaluator with the same ``principles`` judges under (both are seeded
    by ``(seed, split, query id)``).  Keys are the ``mi`` keys prefixed ``id_`` / ``ood_`` / ``all_``."""

    name = "mi-sampled"
    description = "Exp. 3 MI: a sampled constitution and its complement per query (C_eval = 2), ID or OOD."
    Options = SampledMIOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        if self.options.file_name is None:
            self.options.file_name = f"mi-{self.options.principles}.jsonl"
        self.metric_prefix = f"{self.options.principles}_"

    def query_constitutions(self, context: EvalContext, queries: list["Query"]) -> list[list["Constitution"]]:
        from sami_toolkit.text.constitutions import eval_constitution_rng, principle_split, sampled_eval_constitution

        pset = context.principle_set
        assert pset is not None
        names = principle_split(pset, self.options.principles)
        out = []
        for q in queries:
            c = sampled_eval_constitution(pset, names, eval_constitution_rng(context.seed, self.options.principles,
                                                                             q.id), self.options.k)
            out.append([c, c.complement()])
        return out
