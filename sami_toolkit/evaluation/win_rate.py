"""The ``win-rate`` evaluator (spec §8.2–§8.5): the all-positive constitution, responses from the evaluated model
and from the base model (cached: they do not change between iterations) and optionally an instruct model, judged
pairwise; raw, balanced and logistic length-corrected rates with SEM/CI, and judge health.

Also the two helpers ``eval compare`` shares with it: :func:`judgment_records` (the per-item rows, the ``eval
stats`` input format) and :func:`flatten_stats`.  Metric keys and labels: :mod:`sami_toolkit.core.metrics`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

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
    positive_constitution,
    resolve_templates,
    shuffled,
    token_lengths,
    with_progress,
)

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.judging.pairwise import ComparisonPair
    from sami_toolkit.text.prompts import PromptTemplates


class WinRateEvaluator(Evaluator):
    """Judge the checkpoint against the base (and optionally an instruct) model under the all-positive
    constitution (spec §8): raw, balanced and logistic length-corrected win rates with SEM/CI, judge health."""

    name = "win-rate"
    description = "Judged win rates vs the base (and instruct) model (spec §8): raw, length-corrected, judge health."
    needs_judge = True

    class Options(ComponentOptions):
        principle_names: list[str] | None = Field(None, description="Principles of the all-positive constitution "
                                                                    "(default: every principle of the set).")
        both_orders: bool = Field(False, description="Judge each pair in both orders (position consistency).")
        ties: Literal["half", "loss", "drop"] = Field("half", description="Tie policy of the raw rate (§8.4b).")
        bootstrap: int = Field(1000, ge=0, le=100_000, description="Bootstrap replicates for the LC win-rate CI "
                                                                    "(0..100000).")
        cache_dir: str | None = Field(None, description="Where base-model responses are cached (default: the "
                                                        "context's options['cache_dir'], else out_dir).")
        length_tokenizer: str | None = Field(None, description="Tokenizer (model reference) that counts lengths "
                                                               "(default: the base model's, else the model's).")
        instruct_prompt: bool = Field(True, description="Prompt the instruct comparator with the task's instruct "
                                                        "template (spec §7.4) when it has one.")
        shuffle_principles: bool = Field(True, description="Shuffle principle order per item (spec §8.2).")

    def evaluate(self, context: EvalContext) -> dict[str, Any]:
        if context.principle_set is None:
            raise ConfigError("the 'win-rate' evaluator needs a principle set (for the all-positive constitution)")
        if context.judge is None:
            raise ConfigError("the 'win-rate' evaluator needs a judge")
        templates = resolve_templates(context.task, context.templates)
        constitution = positive_constitution(context.principle_set, self.options.principle_names)
        queries = list(context.queries)
        # One shuffled order per item shared by every model (the paper's eval files share one order, §10.10),
        # which also keeps the base responses' cache valid across iterations.
        rng = random.Random(context.seed)
        gen_const = [shuffled(constitution, rng, self.options.shuffle_principles) for _ in queries]
        judge_const = [shuffled(constitution, rng, self.options.shuffle_principles) for _ in queries]
        prompts = generation_prompts(templates, queries, gen_const)

        comparators = [("base", context.base_model, False), ("instruct", context.baseline_model, True)]
        comparators = [(label, ref, instruct) for label, ref, instruct in comparators if ref]
        if not comparators:
            raise ConfigError("the 'win-rate' evaluator needs a base_model or a baseline_model to compare against")
        result: dict[str, Any] = {"judge_cost": 0.0}
        candidate = None
        tokenizer_ref = self.options.length_tokenizer or context.base_model or context.model
        for label, ref, instruct in comparators:
            key = f"win_rate_vs_{label}"
            if ref == context.model:  # iteration 0 against itself: the chance reference, no judging
                result.update({key: 0.5, f"{key}_sem": 0.0, f"{key}_note": "model is the comparator"})
                continue
            if candidate is None:
                candidate = generate(context.sampler, context.model, prompts, task=context.task,
                                     templates=templates, label=progress_label(context, "win rate: candidate"))
            baseline = self._comparator_responses(context, templates, label, ref, instruct, prompts, gen_const,
                                                  result)
            pairs = self._pairs(context, templates, judge_const, candidate, baseline)
            self._judge(context, label, ref, pairs, candidate, baseline, tokenizer_ref, result)
        result["length_unit"] = f"tokens ({tokenizer_ref})"
        return result

    def _comparator_responses(self, context: EvalContext, templates: "PromptTemplates", label: str, ref: str,
                              instruct: bool, prompts: list[str], gen_const: list[str],
                              result: dict[str, Any]) -> list[str]:
        """The comparator's responses, cached across iterations; an instruct model gets its own chat-template
        prompt and the task's instruct clean-up (spec §7.4)."""
        cache_dir = Path(self.options.cache_dir or context.options.get("cache_dir") or context.out_dir)
        chat = bool(instruct and self.options.instruct_prompt and templates.instruct)
        if chat:  # spec §7.4: the instruct model gets its own chat-template prompt, no prefill
            messages = generation_prompts(templates, list(context.queries), gen_const, template=templates.instruct,
                                          instruct=True)
            cmp_prompts, note = chat_prompts(ref, messages)
            if note:
                result[f"win_rate_vs_{label}_prompt_note"] = note
        else:
            cmp_prompts = prompts
        baseline = cached_generate(cache_dir, context.sampler, ref, cmp_prompts, task=context.task,
                                   templates=templates, label=f"win rate: {label} responses", postprocess=not chat)
        if chat:  # spec §7.4: instruct outputs get the task's instruct clean-up (no "The post" prefill)
            from sami_toolkit.text.postprocess import postprocess_response

            baseline = [postprocess_response(context.task, b, templates, instruct=True) for b in baseline]
        return baseline

    @staticmethod
    def _pairs(context: EvalContext, templates: "PromptTemplates", judge_const: list[str], candidate: list[str],
               baseline: list[str]) -> list["ComparisonPair"]:
        from sami_toolkit.judging.pairwise import ComparisonPair
        from sami_toolkit.text.prompts import format_judge_query

        return [ComparisonPair(id=q.id, query=format_judge_query(templates, q.text), constitution=jc, candidate=c,
                               baseline=b, task=context.task)
                for q, jc, c, b in zip(context.queries, judge_const, candidate, baseline)]

    def _judge(self, context: EvalContext, label: str, ref: str, pairs: list["ComparisonPair"],
               candidate: list[str], baseline: list[str], tokenizer_ref: str, result: dict[str, Any]) -> None:
        """Judge the pairs against one comparator, write ``win_rate_vs_<label>.jsonl`` and add its statistics and
        judge health to ``result``."""
        from sami_toolkit.evaluation.stats import compute_stats, items_from_records, judge_health
        from sami_toolkit.judging.pairwise import guarded_judge_pairs

        judge = context.judge
        assert judge is not None  # checked by evaluate
        outcomes = with_progress(
            lambda cb: guarded_judge_pairs(judge, pairs, seed=context.seed, both_orders=self.options.both_orders,
                                           progress=cb),
            len(pairs) * (2 if self.options.both_orders else 1), f"judging vs {label}")
        len_c, unit = token_lengths(candidate, tokenizer_ref)
        len_b, _ = token_lengths(baseline, tokenizer_ref)
        from sami_toolkit.core.secrets import scrub_data
        from sami_toolkit.evaluation.stats.items import STATS_SETTINGS_KEY

        records = judgment_records(pairs, outcomes, len_c, len_b, length_unit=unit)
        settings = {"ties": self.options.ties, "bootstrap": self.options.bootstrap, "seed": context.seed}
        for record in records:  # `eval stats` on the file reproduces these numbers (issue 14 §1)
            record[STATS_SETTINGS_KEY] = dict(settings)
        # a judge server may echo the key in an error body: mask it before it is recorded (issue 14 §4)
        clean: Any = scrub_data(records)
        atomic_write_jsonl(Path(context.out_dir) / f"win_rate_vs_{label}.jsonl", clean)
        stats = compute_stats(items_from_records(records), **settings)
        health = judge_health(items_from_records(records), judge_model=judge.model_name,
                              candidate_model=context.model, baseline_model=ref)
        result.update(flatten_stats(stats, suffix=f"_vs_{label}"))
        result[f"judge_health_vs_{label}"] = health
        result["judge_cost"] += sum(o.cost for o in outcomes)


def judgment_records(pairs: Sequence[Any], outcomes: Sequence[Any], len_test: Sequence[int],
                     len_baseline: Sequence[int], *, length_unit: str = "tokens",
                     prompts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per-item judgment rows (:class:`~sami_toolkit.core.records.JudgmentRow`): the ``eval stats`` input format
    plus everything needed to audit a verdict."""
    from sami_toolkit.core.records import JudgmentRow

    return [JudgmentRow.of(pair, o, len_test=len_test[i], len_baseline=len_baseline[i], length_unit=length_unit,
                           prompt=prompts[i] if prompts is not None else None).to_dict()
            for i, (pair, o) in enumerate(zip(pairs, outcomes))]


def flatten_stats(stats: Any, *, suffix: str) -> dict[str, Any]:
    """:class:`~sami_toolkit.evaluation.stats.WinRateStats` as flat ``metrics.json`` keys (``win_rate_vs_base`` ...)."""
    d = stats.to_dict()
    out = {f"win_rate{suffix}": d["win_rate"], f"win_rate{suffix}_sem": d["sem"],
           f"win_rate{suffix}_ci_low": d["ci_low"], f"win_rate{suffix}_ci_high": d["ci_high"],
           f"win_rate{suffix}_n": d["n"], f"win_rate{suffix}_failures": d["failures"],
           f"win_rate{suffix}_ties": d["ties"],
           f"balanced_win_rate{suffix}": d["balanced_win_rate"], f"balanced_win_rate{suffix}_sem": d["balanced_sem"],
           f"logistic_win_rate{suffix}": d["logistic_win_rate"], f"logistic_win_rate{suffix}_sem": d["logistic_sem"],
           f"lc_win_rate{suffix}": d["lc_win_rate"], f"lc_win_rate{suffix}_ci_low": d["lc_ci_low"],
           f"lc_win_rate{suffix}_ci_high": d["lc_ci_high"],
           f"win_rate{suffix}_mean_len_test": d["mean_len_test"],
           f"win_rate{suffix}_mean_len_comparator": d["mean_len_baseline"]}
    if d["notes"]:
        out[f"win_rate{suffix}_notes"] = d["notes"]
    return out
