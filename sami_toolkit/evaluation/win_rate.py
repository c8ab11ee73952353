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
    from sami_toolkit.core.records import Query
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
        constitution: Literal["positive", "sampled"] = Field(
            "positive", description="positive: the all-positive constitution for every item (Exp. 1–2, spec "
                                    "§8.2). sampled: per item k principles of the `principles` split, each "
                                    "randomly as definition or antithesis (Exp. 3, spec §5.3, §8.1).")
        principles: Literal["id", "ood", "all"] = Field(
            "id", description="With constitution: sampled, where the principles come from: id = the set's "
                              "train_principles, ood = its held_out_principles (spec §6.4), all.")
        k: int = Field(2, ge=1, description="Principles per sampled constitution (Exp. 3: 2).")
        prompt: Literal["generation", "generation_cot", "training"] = Field(
            "generation", description="Template the candidate and base responses are generated with "
                                      "(Exp. 3: generation_cot with CoT, training without; spec §8.2).")
        query_subset: str | None = Field(None, description="Judge only queries whose meta 'subset' is this "
                                                           "(HH's combined pool: helpful-base / harmless-base, "
                                                           "reported separately as in spec §9.1).")
        metric_prefix: str | None = Field(None, description="Put before every key and file name (default: "
                                          "'<principles>_' for sampled constitutions, '<subset>_' with "
                                          "query_subset, else none), so several win-rate evaluators can run.")
        position_seed: int = Field(1, ge=0, le=2**32 - 1, description="Seed of the A/B position draw: the "
                                   "paper's judge script used np.random.seed(1) (spec §8.3), as `eval compare` "
                                   "does by default.")
        parse: Literal["strict", "paper"] = Field(
            "strict", description="Verdict parsing: strict (a bare A or B after 'Final Response:', anything else "
                                  "fails) or paper (spec §8.3/§10.15: substring test after the first 'Final "
                                  "Response:', both letters = tie; applied to the judge's raw answer).")

    def check_plan(self, pset: Any, templates: "PromptTemplates", *, baseline_model: str | None = None) -> None:
        """Raise a ConfigError now for what would fail at the first evaluation (a CoT prompt without the task's
        CoT template, an OOD split without held-out principles)."""
        from sami_toolkit.text.prompts import sampling_template

        sampling_template(templates, self.options.prompt)
        if self.options.constitution == "sampled":
            from sami_toolkit.text.constitutions import principle_split

            names = principle_split(pset, self.options.principles)
            if len(names) < self.options.k:
                raise ConfigError(f"principles: {self.options.principles} has {len(names)} principle(s), fewer "
                                  f"than k={self.options.k}")

    def prefix(self) -> str:
        """The key/file prefix (option ``metric_prefix``, or derived from the constitution and subset)."""
        o = self.options
        if o.metric_prefix is not None:
            return o.metric_prefix
        from sami_toolkit.evaluation.mi import subset_prefix

        return subset_prefix(o.query_subset) + (f"{o.principles}_" if o.constitution == "sampled" else "")

    def item_constitutions(self, context: EvalContext, queries: Sequence["Query"]) -> list[str]:
        """The evaluation constitution of each item: the all-positive one, or the Exp. 3 sampled one (seeded by
        ``(seed, split, query id)``, so every iteration and the base model see the same; spec §5.3)."""
        pset = context.principle_set
        assert pset is not None
        o = self.options
        if o.constitution == "positive":
            return [positive_constitution(pset, o.principle_names)] * len(queries)
        from sami_toolkit.text.constitutions import eval_constitution_rng, principle_split, sampled_eval_constitution

        names = principle_split(pset, o.principles)
        return [sampled_eval_constitution(pset, names, eval_constitution_rng(context.seed, o.principles, q.id),
                                          o.k).render(pset) for q in queries]

    def evaluate(self, context: EvalContext) -> dict[str, Any]:
        if context.principle_set is None:
            raise ConfigError("the 'win-rate' evaluator needs a principle set (for the all-positive constitution)")
        if context.judge is None:
            raise ConfigError("the 'win-rate' evaluator needs a judge")
        import dataclasses

        from sami_toolkit.text.prompts import sampling_template

        if self.options.query_subset is not None:
            subset = [q for q in context.queries if q.meta.get("subset") == self.options.query_subset]
            if not subset:
                raise ConfigError(f"the 'win-rate' evaluator: no held-out query has subset "
                                  f"'{self.options.query_subset}'", hint="check data.eval_source (a mix source "
                                  "labels each query with its subset)")
            context = dataclasses.replace(context, queries=subset)
        templates = resolve_templates(context.task, context.templates)
        queries = list(context.queries)
        constitutions = self.item_constitutions(context, queries)
        # One shuffled order per item shared by every model (the paper's eval files share one order, §10.10),
        # which also keeps the base responses' cache valid across iterations.
        rng = random.Random(context.seed)
        gen_const = [shuffled(c, rng, self.options.shuffle_principles) for c in constitutions]
        judge_const = [shuffled(c, rng, self.options.shuffle_principles) for c in constitutions]
        prompts = generation_prompts(templates, queries, gen_const,
                                     template=sampling_template(templates, self.options.prompt))
        prefix = self.prefix()
        result = self._evaluate(context, templates, queries, prompts, gen_const, judge_const)
        return {f"{prefix}{key}": value for key, value in result.items()}

    def _generate(self, context: EvalContext, templates: "PromptTemplates", model: str, prompts: list[str],
                  label: str, cache_dir: Path | None = None) -> list[str]:
        """Responses of ``model`` post-processed for the configured prompt (spec §2.7: the CoT answer after
        'Summary:', no prefill for the training prompt); cached when ``cache_dir`` is given."""
        from sami_toolkit.text.postprocess import postprocess_sampled

        plain = self.options.prompt == "generation"
        if cache_dir is not None:
            raw = cached_generate(cache_dir, context.sampler, model, prompts, task=context.task, templates=templates,
                                  label=label, postprocess=plain)
        else:
            raw = generate(context.sampler, model, prompts, task=context.task, templates=templates,
                           label=progress_label(context, label), postprocess=plain)
        return raw if plain else [postprocess_sampled(context.task, r, templates, self.options.prompt) for r in raw]

    def _evaluate(self, context: EvalContext, templates: "PromptTemplates", queries: list["Query"],
                  prompts: list[str], gen_const: list[str], judge_const: list[str]) -> dict[str, Any]:
        """Generate, judge against each comparator and collect the (unprefixed) metrics."""
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
                candidate = self._generate(context, templates, context.model, prompts, "win rate: candidate")
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
        if chat:
            baseline = cached_generate(cache_dir, context.sampler, ref, cmp_prompts, task=context.task,
                                       templates=templates, label=f"win rate: {label} responses", postprocess=False)
        else:
            baseline = self._generate(context, templates, ref, cmp_prompts, f"win rate: {label} responses",
                                      cache_dir=cache_dir)
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
            lambda cb: guarded_judge_pairs(judge, pairs, seed=self.options.position_seed,
                                           both_orders=self.options.both_orders, parse=self.options.parse,
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
        atomic_write_jsonl(Path(context.out_dir) / f"{self.prefix()}win_rate_vs_{label}.jsonl", clean)
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


# ------------------------------------------------------------------------------------------- the paper's tables
#: the principle-split labels of spec §9.3's Tables 8–9
SPLIT_LABELS: dict[str, str] = {"id": "In-Distribution", "ood": "OOD"}


def paper_table_row(iteration: int, label: str, rate: float, n: int) -> dict[str, Any]:
    """One row of the paper's win-rate tables (spec §8.5, Tables 2–9): ``WR %``, the 95% CI p ± 1.96·√(p(1−p)/n),
    ``t = (p − 0.5)/√(p(1−p)/n)`` and the p-value by threshold."""
    from sami_toolkit.evaluation.stats.proportions import p_value_label, proportion_summary

    s = proportion_summary(rate, n)
    return {"iteration": iteration, "principles": label, "win_rate_pct": 100 * rate,
            "ci_low_pct": 100 * s["ci_low"], "ci_high_pct": 100 * s["ci_high"], "t": s["t"],
            "p": p_value_label(s["p_value"]), "n": n}


def split_table(metrics_by_iteration: dict[int, dict[str, Any]], *, splits: Sequence[str] = ("id", "ood"),
                comparator: str = "base") -> list[dict[str, Any]]:
    """Spec §9.3's table (Tables 8–9: Iter | Principles | WR % | 95% CI | t | p) from a run's per-iteration
    ``metrics.json`` (``<split>_win_rate_vs_<comparator>`` and ``..._n``, written by the ``win-rate`` evaluator
    with ``constitution: sampled``): every split's rows, iterations ascending; iteration 0 (the base model against
    itself) is left out, as in the paper."""
    rows = []
    for split in splits:
        key = f"{split}_win_rate_vs_{comparator}"
        for t in sorted(metrics_by_iteration):
            m = metrics_by_iteration[t]
            if t == 0 or m.get(key) is None or not m.get(f"{key}_n"):
                continue
            rows.append(paper_table_row(t, SPLIT_LABELS.get(split, split), float(m[key]), int(m[f"{key}_n"])))
    return rows


def run_split_table(run_root: str | Path, **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`split_table` over the ``iterations/<t>/metrics.json`` files of a run directory."""
    from sami_toolkit.core.io import read_json

    metrics = {}
    for path in sorted(Path(run_root).glob("iterations/*/metrics.json")):
        if path.parent.name.isdigit():
            metrics[int(path.parent.name)] = read_json(path, {})
    return split_table(metrics, **kwargs)


def format_split_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`split_table` as the paper's Markdown table (spec §9.3)."""
    lines = ["| Iter | Principles | WR % | 95% CI | t | p |", "|---|---|---|---|---|---|"]
    for r in rows:
        t = "n/a" if r["t"] is None else f"{r['t']:.2f}"
        lines.append(f"| {r['iteration']} | {r['principles']} | {r['win_rate_pct']:.2f} | "
                     f"[{r['ci_low_pct']:.2f}, {r['ci_high_pct']:.2f}] | {t} | {r['p']} |")
    return "\n".join(lines)
