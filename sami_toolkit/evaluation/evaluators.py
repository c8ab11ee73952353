"""Per-checkpoint evaluation: :class:`EvalContext` and the built-in evaluators ``mi`` and ``win-rate``.

The loop calls ``get_component("evaluators", name, options).evaluate(context)`` once per iteration; each
evaluator writes its per-item results under ``context.out_dir`` and returns flat metric keys that the report
reads from ``iterations/<t>/metrics.json`` (names listed in :data:`METRIC_KEYS`):

* ``mi`` (spec §1.6): every constitution of the set, one greedy response each, a C×C matrix of **sum**
  log-probs under the evaluated model with the **training** prompt, and four estimators per query — the paper's
  ``mi_paper`` (not a bound), ``mi_infonce`` (two-sided), ``mi_infonce_constitutions`` (the headline: a valid
  lower bound on I(Y; C | x)) and ``mi_infonce_responses`` — plus response lengths, each as mean ± SEM.
* ``win-rate`` (spec §8.2–§8.5): the all-positive constitution, responses from the evaluated model and from the
  base model (cached: they do not change between iterations) and optionally an instruct model, judged pairwise;
  raw, balanced and logistic length-corrected rates with SEM/CI, and judge health.

Heavy imports (torch, transformers) happen inside methods.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Sequence

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions, Evaluator, Query
from sami_toolkit.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from sami_toolkit.core.components import Judge, Sampler
    from sami_toolkit.text.principles import PrincipleSet
    from sami_toolkit.text.prompts import PromptTemplates

#: the ``mi`` evaluator's metric keys; ``mi-heldout`` writes the same keys with the prefix ``heldout_``
_MI_KEYS: tuple[str, ...] = (
    "mi_paper", "mi_paper_sem", "mi_infonce", "mi_infonce_sem", "mi_infonce_constitutions",
    "mi_infonce_constitutions_sem", "mi_infonce_responses", "mi_infonce_responses_sem", "mean_length_tokens",
    "mean_length_tokens_sem", "mi_n_queries", "mi_n_constitutions", "mi_skipped_queries", "mi_file", "mi_note",
    "mi_scorer", "mi_precision")

#: metric keys the evaluators put in ``metrics.json`` (the report and the loop rely on these names)
METRIC_KEYS: tuple[str, ...] = (
    # mi, mi-heldout
    *_MI_KEYS, *(f"heldout_{key}" for key in _MI_KEYS),
    # win-rate, per comparator X in {base, instruct}:
    "win_rate_vs_X", "win_rate_vs_X_sem", "win_rate_vs_X_ci_low", "win_rate_vs_X_ci_high", "win_rate_vs_X_n",
    "win_rate_vs_X_failures", "win_rate_vs_X_ties", "balanced_win_rate_vs_X", "balanced_win_rate_vs_X_sem",
    "logistic_win_rate_vs_X", "logistic_win_rate_vs_X_sem", "lc_win_rate_vs_X", "lc_win_rate_vs_X_ci_low",
    "lc_win_rate_vs_X_ci_high", "win_rate_vs_X_mean_len_test", "win_rate_vs_X_mean_len_comparator",
    "win_rate_vs_X_notes", "win_rate_vs_X_prompt_note", "judge_health_vs_X", "judge_cost", "length_unit",
)


@dataclass
class EvalContext:
    """Everything an evaluator needs for one checkpoint."""

    model: str  #: the checkpoint being evaluated (π_η): a model reference
    base_model: str | None  #: π_BASE (win rates are against it; None skips that comparison)
    queries: list[Query]
    principle_set: "PrincipleSet | None"
    templates: "PromptTemplates | None"
    task: str
    sampler: "Sampler"
    judge: "Judge | None"
    out_dir: Path
    seed: int
    baseline_model: str | None = None  #: optional second comparator, e.g. an instruct model
    options: dict[str, Any] = field(default_factory=dict)  #: free-form: cache_dir, progress (callable) ...


# -------------------------------------------------------------------------------------------- shared helpers
def resolve_templates(task: str, templates: "PromptTemplates | None") -> "PromptTemplates":
    if templates is not None:
        return templates
    from sami_toolkit.text.prompts import get_templates

    return get_templates(task)


def positive_constitution(pset: "PrincipleSet", names: Sequence[str] | None = None) -> str:
    """The all-definition constitution (spec §8.2), rendered as a numbered list."""
    from sami_toolkit.text.constitutions import Constitution

    chosen = list(names) if names else [p.name for p in pset.principles]
    for name in chosen:
        pset.get(name)
    return Constitution.positive(chosen).render(pset)


def shuffled(text: str, rng: random.Random, enabled: bool = True) -> str:
    """Principle order shuffled (spec §2.8), or the text unchanged."""
    if not enabled:
        return text
    from sami_toolkit.text.constitutions import shuffle_constitution

    return shuffle_constitution(text, rng)


def generation_prompts(templates: "PromptTemplates", queries: Sequence[Query], constitutions: Sequence[str],
                       *, template: str | None = None, instruct: bool = False) -> list[str]:
    """One generation prompt per (query, constitution text)."""
    from sami_toolkit.text.prompts import build_prompt, format_instruct_question, format_question

    tmpl = template if template is not None else templates.generation
    fmt = format_instruct_question if instruct else format_question
    return [build_prompt(tmpl, constitution=c, question=fmt(templates, q.text)) for q, c in zip(queries, constitutions)]


def generate(sampler: "Sampler", model: str, prompts: Sequence[str], *, task: str, templates: "PromptTemplates",
             label: str = "generating", postprocess: bool = True) -> list[str]:
    """Sample one response per prompt with rich progress on stderr, then post-process (spec §2.7)."""
    from sami_toolkit.text.postprocess import postprocess_response

    raw = with_progress(lambda cb: sampler.generate(model, list(prompts), progress=cb), len(prompts), label)
    if len(raw) != len(prompts):
        from sami_toolkit.core.errors import InfrastructureError

        raise InfrastructureError(f"sampler '{sampler.name}' returned {len(raw)} responses for {len(prompts)} prompts")
    return [postprocess_response(task, r, templates) for r in raw] if postprocess else list(raw)


def with_progress(fn: Callable[[Callable[[int], None]], Any], total: int, label: str) -> Any:
    """Run ``fn(progress_callback)`` under a rich progress bar on stderr (quiet when stderr is not a TTY)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sami_toolkit.core.consoles import console as make_console

    console = make_console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task_id = bar.add_task(label, total=total)
        return fn(lambda n=1: bar.advance(task_id, n))


def token_lengths(texts: Sequence[str], tokenizer_ref: str | None) -> tuple[list[int], str]:
    """Response lengths and their unit. With a tokenizer: ``len(tokenizer.encode(text))`` (special tokens
    included, as the paper counted with BOS, spec §8.3); without: whitespace words."""
    if tokenizer_ref is None:
        return [len(t.split()) for t in texts], "words"
    from sami_toolkit.models.loading import load_tokenizer

    tok = load_tokenizer(tokenizer_ref)
    return [len(tok.encode(t)) for t in texts], f"tokens ({tokenizer_ref})"


def _hash(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def cached_generate(cache_dir: Path, sampler: "Sampler", model: str, prompts: Sequence[str], *, task: str,
                    templates: "PromptTemplates", label: str, postprocess: bool = True) -> list[str]:
    """:func:`generate` with a file cache keyed by (model, sampler name and options, prompts): the base model's
    responses are identical at every iteration, so they are sampled once (spec §8.2 uses greedy decoding)."""
    options = sampler.options.model_dump() if hasattr(sampler.options, "model_dump") else {}
    key = _hash(model, sampler.name, options, list(prompts), postprocess)
    path = Path(cache_dir) / f"responses-{key}.jsonl"
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(rows) == len(prompts):
            return [r["response"] for r in rows]
    responses = generate(sampler, model, prompts, task=task, templates=templates, label=label,
                         postprocess=postprocess)
    write_jsonl(path, [{"prompt": p, "response": r, "model": model} for p, r in zip(prompts, responses)])
    return responses


def chat_prompts(model: str, messages: Sequence[str]) -> tuple[list[str], str | None]:
    """Wrap user messages in ``model``'s chat template (spec §7.4: the instruct baseline is prompted through
    its own chat template). Returns the prompts and a note when the raw messages had to be used instead."""
    from sami_toolkit.core.errors import InfrastructureError
    from sami_toolkit.models.loading import load_tokenizer

    try:
        tokenizer = load_tokenizer(model)
    except InfrastructureError as exc:
        return list(messages), f"chat template of '{model}' unavailable ({exc.message}); raw instruct prompts used"
    if not getattr(tokenizer, "chat_template", None):
        return list(messages), f"'{model}' has no chat template; raw instruct prompts used"
    return [tokenizer.apply_chat_template([{"role": "user", "content": m}], tokenize=False,
                                          add_generation_prompt=True) for m in messages], None


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write atomically (temp file + rename) so an interrupted run never leaves half a file."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


def progress_label(context: EvalContext, text: str) -> str:
    return f"{text} [{Path(str(context.model)).name}]"


# ------------------------------------------------------------------------------------------------ MI
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


class MIProtocolOptions(ComponentOptions):
    """What the MI evaluators measure (spec §1.6), whatever scores the matrices."""

    principle_names: list[str] | None = Field(None, description="Principles whose 2^k constitutions are "
                                                                "contrasted (default: every principle).")
    max_length: int | None = Field(None, ge=2, description="Truncate prompt+response to this many tokens.")
    shuffle_principles: bool = Field(True, description="Shuffle principle order per prompt (spec §1.6 step 3).")
    file_name: str = Field("mi.jsonl", description="Per-query results file under the context's out_dir.")
    responses_from: Literal["model", "base"] = Field(
        "model", description="model: responses generated by the evaluated checkpoint (the paper's protocol, "
                             "spec §1.6). base: responses of the base model (generated once, cached), so only "
                             "the scorer changes between checkpoints.")
    constitutions: Literal["all", "extremes"] = Field(
        "all", description="all: every 2^k combination of the principles (C_eval = 4 for two, spec §1.6). "
                           "extremes: the all-positive and all-negative constitutions, the pair that the "
                           "positive_vs_negative strategy trains on (spec §5.3).")


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

    class Options(MIProtocolOptions):
        batch_size: int = Field(2, ge=1, description="Queries per scoring micro-batch (each is C×C sequences).")
        dtype: Literal["float32", "bfloat16"] = Field("float32", description="Scoring precision (bfloat16 is "
                                                                             "faster on CPUs with bf16).")
        autocast: bool | Literal["auto"] = Field(
            "auto", description="Score under bfloat16 autocast with float32 weights (scores stay float32): true, "
                                "false, or auto = where bf16 is fast (GPUs with bf16, CPUs with AVX512-BF16/AMX: "
                                "about 3x faster there; bf16 is ~15x slower on AVX2-only CPUs).")
        device: str = Field("auto", description="Torch device for scoring: auto (CUDA when available), cpu, "
                                                "cuda, cuda:1...")

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
            del model

    def evaluate(self, context: EvalContext) -> dict[str, Any]:
        from sami_toolkit.text.constitutions import all_constitutions
        from sami_toolkit.text.prompts import build_prompt, format_question
        from sami_toolkit.evaluation.stats import mean_sem

        if context.principle_set is None:
            raise ConfigError(f"the '{self.name}' evaluator needs a principle set (its constitutions are contrasted)")
        if not context.queries:
            raise ConfigError(f"the '{self.name}' evaluator got no queries")
        o = self.options
        pset = context.principle_set
        templates = resolve_templates(context.task, context.templates)
        constitutions = all_constitutions(pset, o.principle_names)
        if o.constitutions == "extremes":
            constitutions = [constitutions[0], constitutions[-1]]
        texts = [c.render(pset) for c in constitutions]
        C = len(texts)
        # one random stream: generation prompts for every query first, then scoring prompts query by query
        rng = random.Random(context.seed)
        queries = list(context.queries)

        # 1-2. one greedy response per (query, constitution), generation prompt: from the evaluated model (spec
        # §1.6), or from the base model (the same responses at every iteration: generated once and cached)
        gen_const = [shuffled(t, rng, o.shuffle_principles) for _ in queries for t in texts]
        prompts = generation_prompts(templates, [q for q in queries for _ in texts], gen_const)
        if o.responses_from == "base":
            if not context.base_model:
                raise ConfigError(f"the '{self.name}' evaluator scores base-model responses but the context has "
                                  "no base model", hint="set responses_from: model")
            cache_dir = Path(context.options.get("cache_dir") or context.out_dir)
            flat = cached_generate(cache_dir, context.sampler, context.base_model, prompts, task=context.task,
                                   templates=templates, label=progress_label(context, "MI: base responses"))
        else:
            flat = generate(context.sampler, context.model, prompts, task=context.task, templates=templates,
                            label=progress_label(context, "MI: generating"))
        responses = [flat[i * C:(i + 1) * C] for i in range(len(queries))]
        usable = [i for i, rs in enumerate(responses) if all(r.strip() for r in rs)]
        skipped = [q.id for i, q in enumerate(queries) if not all(r.strip() for r in responses[i])]

        # 3. score every (constitution k, response j) with the TRAINING prompt, sum log-probs, same model
        rows: list[dict[str, Any]] = []
        with self.scoring_session(context) as session:
            precision = session.precision
            if usable:
                score_prompts = [[build_prompt(templates.training,
                                               constitution=shuffled(t, rng, o.shuffle_principles),
                                               question=format_question(templates, queries[i].text))
                                  for t in texts] for i in usable]
                scores = with_progress(lambda advance: session.score(score_prompts, [responses[i] for i in usable],
                                                                     advance),
                                       len(usable), progress_label(context, f"MI: scoring ({self.scorer})"))
                est = mi_estimates(scores)
                for b, i in enumerate(usable):
                    lengths = [len(session.tokenizer.encode(r)) for r in responses[i]]
                    rows.append({"id": queries[i].id, **{k: float(v[b]) for k, v in est.items()},
                                 "length_tokens": lengths[0], "length_tokens_all": lengths,
                                 "constitutions": [c.label() for c in constitutions],
                                 "responses": responses[i], "scores": scores[b].tolist()})
        out_path = Path(context.out_dir) / o.file_name
        write_jsonl(out_path, rows)

        result: dict[str, Any] = {"mi_n_queries": len(rows), "mi_n_constitutions": C,
                                  "mi_skipped_queries": len(skipped), "mi_file": str(out_path),
                                  "mi_scorer": self.scorer, "mi_precision": precision}
        for key in MI_ESTIMATORS:
            result[key], result[f"{key}_sem"] = mean_sem([r[key] for r in rows])
        # response length of the all-positive constitution (constitution 0, spec §8.6), in tokens
        result["mean_length_tokens"], result["mean_length_tokens_sem"] = mean_sem([r["length_tokens"] for r in rows])
        if skipped:
            result["mi_note"] = (f"{len(skipped)} query(ies) skipped: an empty response cannot be scored "
                                 f"({', '.join(skipped[:5])}{'...' if len(skipped) > 5 else ''})")
        return {f"{self.metric_prefix}{key}": value for key, value in result.items()}


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


# ------------------------------------------------------------------------------------------------ win rate
class WinRateEvaluator(Evaluator):
    """Judge the checkpoint against the base (and optionally an instruct) model under the all-positive
    constitution (spec §8): raw, balanced and logistic length-corrected win rates with SEM/CI, judge health."""

    name = "win-rate"
    description = "Judged win rates vs the base (and instruct) model (spec §8): raw, length-corrected, judge health."

    class Options(ComponentOptions):
        principle_names: list[str] | None = Field(None, description="Principles of the all-positive constitution "
                                                                    "(default: every principle of the set).")
        both_orders: bool = Field(False, description="Judge each pair in both orders (position consistency).")
        ties: Literal["half", "loss", "drop"] = Field("half", description="Tie policy of the raw rate (§8.4b).")
        bootstrap: int = Field(1000, ge=0, description="Bootstrap replicates for the LC win-rate CI.")
        cache_dir: str | None = Field(None, description="Where base-model responses are cached (default: the "
                                                        "context's options['cache_dir'], else out_dir).")
        length_tokenizer: str | None = Field(None, description="Tokenizer (model reference) that counts lengths "
                                                               "(default: the base model's, else the model's).")
        instruct_prompt: bool = Field(True, description="Prompt the instruct comparator with the task's instruct "
                                                        "template (spec §7.4) when it has one.")
        shuffle_principles: bool = Field(True, description="Shuffle principle order per item (spec §8.2).")

    def evaluate(self, context: EvalContext) -> dict[str, Any]:
        from sami_toolkit.evaluation.compare import guarded_judge_pairs
        from sami_toolkit.judging.pairwise import ComparisonPair
        from sami_toolkit.text.prompts import format_judge_query
        from sami_toolkit.evaluation.stats import compute_stats, items_from_records, judge_health

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
        out_dir = Path(context.out_dir)
        cache_dir = Path(self.options.cache_dir or context.options.get("cache_dir") or out_dir)

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
            chat = bool(instruct and self.options.instruct_prompt and templates.instruct)
            if chat:  # spec §7.4: the instruct model gets its own chat-template prompt, no prefill
                messages = generation_prompts(templates, queries, gen_const, template=templates.instruct,
                                              instruct=True)
                cmp_prompts, note = chat_prompts(ref, messages)
                if note:
                    result[f"win_rate_vs_{label}_prompt_note"] = note
            else:
                cmp_prompts = prompts
            baseline = cached_generate(cache_dir, context.sampler, ref, cmp_prompts, task=context.task,
                                       templates=templates, label=f"win rate: {label} responses",
                                       postprocess=not chat)
            if chat:  # spec §7.4: instruct outputs get the task's instruct clean-up (no "The post" prefill)
                from sami_toolkit.text.postprocess import postprocess_response

                baseline = [postprocess_response(context.task, b, templates, instruct=True) for b in baseline]
            pairs = [ComparisonPair(id=q.id, query=format_judge_query(templates, q.text), constitution=jc,
                                    candidate=c, baseline=b, task=context.task)
                     for q, jc, c, b in zip(queries, judge_const, candidate, baseline)]
            outcomes = with_progress(
                lambda cb: guarded_judge_pairs(context.judge, pairs, seed=context.seed,
                                               both_orders=self.options.both_orders, progress=cb),
                len(pairs) * (2 if self.options.both_orders else 1), f"judging vs {label}")
            len_c, unit = token_lengths(candidate, tokenizer_ref)
            len_b, _ = token_lengths(baseline, tokenizer_ref)
            records = judgment_records(pairs, outcomes, len_c, len_b, length_unit=unit)
            write_jsonl(out_dir / f"{key}.jsonl", records)
            stats = compute_stats(items_from_records(records), ties=self.options.ties,
                                  bootstrap=self.options.bootstrap, seed=context.seed)
            health = judge_health(items_from_records(records), judge_model=context.judge.model_name,
                                  candidate_model=context.model, baseline_model=ref)
            result.update(flatten_stats(stats, suffix=f"_vs_{label}"))
            result[f"judge_health_vs_{label}"] = health
            result["judge_cost"] += sum(o.cost for o in outcomes)
        result["length_unit"] = f"tokens ({tokenizer_ref})"
        return result


def judgment_records(pairs: Sequence[Any], outcomes: Sequence[Any], len_test: Sequence[int],
                     len_baseline: Sequence[int], *, length_unit: str = "tokens",
                     prompts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per-item judgment rows: the ``eval stats`` input format plus everything needed to audit a verdict."""
    rows = []
    for i, (pair, o) in enumerate(zip(pairs, outcomes)):
        rows.append({"id": pair.id, "outcome": o.outcome, "failed": o.outcome is None, "error": o.error,
                     "len_test": len_test[i], "len_baseline": len_baseline[i], "length_unit": length_unit,
                     "candidate_position": o.candidate_position, "verdicts": list(o.verdicts), "raw": list(o.raw),
                     "cost": o.cost, "cached": o.cached,
                     "prompt": prompts[i] if prompts is not None else pair.query, "constitution": pair.constitution,
                     "candidate": pair.candidate, "baseline": pair.baseline})
    return rows


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


#: public names for helpers other evaluators (e.g. the vLLM plugin's ``mi-vllm``) reuse
