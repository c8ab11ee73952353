"""Planning a SAMI run: everything resolved from the config once, before any model is loaded.

:func:`plan_run` loads the principle set, the prompt templates and the queries, and splits the queries into the
pool halves and the held-out evaluation queries (spec §2.5–§2.6, §8.1); every problem with them is a
:class:`ConfigError` (exit 2) raised here rather than after the base model has been loaded.  The helpers that build
the configured components from the registry (:func:`create`, :func:`build_trainer`, :func:`sampler_options`) and
the seeding rule every stage follows (:func:`seeded_rng`) live here too, so :mod:`sami_toolkit.run.loop` holds
only the stages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from sami_toolkit.core.errors import ConfigError, UnknownComponentError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from sami_toolkit.core.records import Query
    from sami_toolkit.plugins.registry import Registry
    from sami_toolkit.run.config import RunConfig
    from sami_toolkit.text.principles import PrincipleSet
    from sami_toolkit.text.prompts import PromptTemplates


@dataclass
class Plan:
    """What a run works on, resolved once from the config."""

    pset: "PrincipleSet"
    templates: "PromptTemplates"
    halves: list[list["Query"]]
    eval_queries: list["Query"]
    #: index of the all-positive constitution among a query's C (``positive_vs_negative`` puts it first), else None
    positive_index: int | None
    base_model: str
    #: adjustments worth telling the user (e.g. a pool smaller than ``data.pool_size``)
    notes: list[str] = field(default_factory=list)


def seeded_rng(*parts: Any) -> random.Random:
    """A generator seeded by a stable string such as ``(seed, "constitutions", t, query_id)``, independent of
    anything drawn before: a resumed run, which skips finished work, draws exactly what an uninterrupted one does."""
    return random.Random(":".join(str(p) for p in parts))


# ------------------------------------------------------------------------------------------------ components
def create(registry: "Registry", kind: str, ref: Any, where: str) -> Any:
    """The component a config reference (``{name, options}``) names; option errors point at ``<where>.options``."""
    return registry.create(kind, ref.name, ref.options, where=f"{where}.options")


def build_trainer(config: "RunConfig", console: "Console | None", *, registry: "Registry") -> Any:
    """The configured trainer; a missing ``deepspeed`` plugin falls back to ``torch`` with a message (the demo
    asks for deepspeed, which is a separate distribution)."""
    try:
        return create(registry, "trainers", config.trainer, "trainer")
    except UnknownComponentError:
        if config.trainer.name != "deepspeed":
            raise
        if console is not None:
            console.print("[yellow]trainer 'deepspeed' is not installed (pip install -e plugins/sami-kit-deepspeed);"
                          " falling back to the built-in 'torch' trainer[/yellow]")
        return registry.create("trainers", "torch")


def sampler_options(config: "RunConfig", templates: "PromptTemplates", *, registry: "Registry") -> dict[str, Any]:
    """The sampler's options plus the task template's stop strings, when the sampler takes ``stop``."""
    options = dict(config.sampler.options)
    cls = registry.get("samplers", config.sampler.name)
    if "stop" in cls.Options.model_fields and "stop" not in options and templates.stop:
        options["stop"] = list(templates.stop)
    return options


# ------------------------------------------------------------------------------------------------ queries
def split_pool_and_eval(config: "RunConfig", queries: Sequence["Query"],
                        eval_queries: Sequence["Query"] | None) -> tuple[list["Query"], list["Query"]]:
    """The training pool and the held-out queries from loaded sources: the first ``eval.size`` of
    ``eval_queries`` (``data.eval_source``) when given, else the last ``eval.size`` of ``queries`` (then excluded
    from the pool, spec §8.1).  Pure, so the preflight can check the counts of local files before a run."""
    if eval_queries is not None:
        return list(queries), list(eval_queries[: config.eval.size])
    if len(queries) <= config.eval.size:
        raise ConfigError(f"data.source has {len(queries)} queries but eval.size={config.eval.size} are held "
                          "out for evaluation; lower eval.size or set data.eval_source")
    return list(queries[: -config.eval.size]), list(queries[-config.eval.size:])


def _pool_and_eval(config: "RunConfig", registry: "Registry") -> tuple[list["Query"], list["Query"]]:
    """Load ``data.source`` (and ``data.eval_source``) and split them (:func:`split_pool_and_eval`)."""
    queries = create(registry, "query-sources", config.data.source, "data.source").load()
    eval_queries = None
    if config.data.eval_source is not None:
        eval_queries = create(registry, "query-sources", config.data.eval_source, "data.eval_source").load()
    return split_pool_and_eval(config, queries, eval_queries)


def pool_halves(config: "RunConfig", pool: Sequence["Query"], notes: list[str]) -> list[list["Query"]]:
    """The pool halves A and B that alternate between iterations (spec §2.6), ``data.pool_size`` each (spec §2.5)."""
    n_halves = 2 if config.data.alternate_halves else 1
    half = config.data.pool_size or len(pool) // n_halves
    if half * n_halves > len(pool):
        available = len(pool) // n_halves
        notes.append(f"data.pool_size={half} per half but only {len(pool)} pool queries: using {available} per half")
        half = available
    if half < 1:
        raise ConfigError(f"the query pool has {len(pool)} queries: too few to form {n_halves} half/halves "
                          "(spec §2.6); add queries or set data.alternate_halves: false")
    return [list(pool[i * half:(i + 1) * half]) for i in range(n_halves)]


def plan_run(config: "RunConfig", console: "Console | None" = None, *, registry: "Registry") -> Plan:
    """Load the principle set, templates and queries; split pool halves and held-out queries (spec §2.5–§2.6,
    §8.1).  Raises ConfigError for anything wrong with them, before any model is touched."""
    from sami_toolkit.models.loading import resolve_model
    from sami_toolkit.text.constitutions import sample_constitutions
    from sami_toolkit.text.principles import load_principle_set
    from sami_toolkit.text.prompts import get_templates

    base = resolve_model(config.model)  # ConfigError (exit 2) if a path does not exist
    pset = load_principle_set(config.principles)
    templates = get_templates(config.task, config.templates)
    pool, eval_queries = _pool_and_eval(config, registry)
    notes: list[str] = []
    halves = pool_halves(config, pool, notes)
    # the response the "positive ends with '.'" rule checks: the all-definition one (positive_vs_negative), or
    # for complement the first drawn constitution, which the Exp. 3 code calls positive (spec §2.7, §5.3)
    positive_index = 0 if config.constitutions.strategy in ("positive_vs_negative", "complement",
                                                            "complement_random_flip") else None
    # check the strategy/C/k combination (and every subset rule) now rather than after the base model has loaded
    cc = config.constitutions
    sample_constitutions(pset, cc.strategy, cc.n, random.Random(0), cc.names, cc.k)
    for subset, rule in cc.subsets.items():
        try:
            sample_constitutions(pset, cc.strategy, cc.n, random.Random(0), rule.names or cc.names,
                                 None if rule.negate else cc.k, rule.negate)
        except ConfigError as exc:
            raise ConfigError(f"constitutions.subsets.{subset}: {exc.message}") from None
    from sami_toolkit.text.prompts import sampling_template

    sampling_template(templates, config.sampling_prompt)  # a task without a CoT template fails here
    _check_evaluators(config, pset, templates, registry)
    return Plan(pset=pset, templates=templates, halves=halves, eval_queries=eval_queries,
                positive_index=positive_index, base_model=base, notes=notes)


def query_constitutions(config: "RunConfig", plan: Plan, t: int, q: "Query") -> list[Any]:
    """The C constitutions of query ``q`` at iteration ``t`` (spec §5.3), from a generator seeded by
    ``(seed, t, query id)``; a query whose ``meta['subset']`` has a rule in ``constitutions.subsets`` (HH's
    combined pool) uses that rule's principle order and always-negated principles."""
    from sami_toolkit.text.constitutions import sample_constitutions

    cc = config.constitutions
    rng = seeded_rng(config.seed, "constitutions", t, q.id)
    rule = cc.subsets.get(str(q.meta.get("subset"))) if cc.subsets else None
    if rule is not None:
        return sample_constitutions(plan.pset, cc.strategy, cc.n, rng, rule.names or cc.names,
                                    None if rule.negate else cc.k, rule.negate)
    return sample_constitutions(plan.pset, cc.strategy, cc.n, rng, cc.names, cc.k)


def _check_evaluators(config: "RunConfig", pset: "PrincipleSet", templates: "PromptTemplates",
                      registry: "Registry") -> None:
    """What an evaluator can only check against the principle set and templates (e.g. an OOD split needs
    ``held_out_principles``, a CoT prompt needs the task's CoT template), now rather than after an iteration."""
    for i, ref in enumerate(config.evaluators):
        evaluator = create(registry, "evaluators", ref, f"evaluators[{i}]")
        check = getattr(evaluator, "check_plan", None)
        if check is None:
            continue
        try:
            check(pset, templates, baseline_model=config.eval.baseline_model)
        except ConfigError as exc:
            raise ConfigError(f"evaluators[{i}] ({ref.name}): {exc.message}", hint=exc.hint) from None


def sample_items(config: "RunConfig", plan: Plan, t: int) -> list[dict[str, Any]]:
    """Every (query, constitution) iteration ``t`` samples, in a fixed order (spec §2.1 step 1): the C
    constitutions of each query of the iteration's half (:func:`query_constitutions`, spec §5.3) and the
    sampling prompt (``sampling_prompt``: the generation, CoT or training template, spec §7) with the principles
    in the constitution's order (file order, or the drawn order for sampled principles; spec §2.8)."""
    from sami_toolkit.text.prompts import build_prompt, format_question, sampling_template

    template = sampling_template(plan.templates, config.sampling_prompt)
    items = []
    for q in plan.halves[config.half_for(t)]:
        consts = query_constitutions(config, plan, t, q)
        question = format_question(plan.templates, q.text)
        for j, c in enumerate(consts):
            rendered = c.render(plan.pset)
            items.append({"query_id": q.id, "index": j, "label": c.label(), "constitution": rendered,
                          "items": c.to_dict()["items"],
                          "prompt": build_prompt(template, constitution=rendered, question=question)})
    return items


def postprocess_sample(config: "RunConfig", plan: Plan, raw: str) -> str:
    """The stored response of one sampled generation (spec §2.7): cut and prefill put back for the generation
    prompt, the final answer only for the CoT prompt, stripped for the training prompt (spec §7.2)."""
    from sami_toolkit.text.postprocess import postprocess_sampled

    return postprocess_sampled(config.task, raw, plan.templates, config.sampling_prompt)


def cap_pairs(config: "RunConfig", queries: Sequence["Query"], pairs: list[Any]) -> tuple[list[Any], int]:
    """The first ``data.max_pairs_per_subset`` kept pairs of each query subset, in pool order (the run scripts'
    ``n_examples``, spec §2.4–§2.5), and how many were left out."""
    cap = config.data.max_pairs_per_subset
    if cap is None:
        return pairs, 0
    subset = {q.id: q.meta.get("subset") for q in queries}
    seen: dict[Any, int] = {}
    kept = []
    for pair in pairs:
        key = subset.get(pair.query_id)
        if seen.get(key, 0) < cap:
            seen[key] = seen.get(key, 0) + 1
            kept.append(pair)
    return kept, len(pairs) - len(kept)


def queries_hash(plan: Plan) -> str:
    """Hash of the ids and texts of every pool and held-out query (a resume must see the same data)."""
    import hashlib
    import json

    payload = [[[q.id, q.text] for q in half] for half in plan.halves] + [[[q.id, q.text] for q in plan.eval_queries]]
    return "sha256:" + hashlib.sha256(json.dumps(payload).encode()).hexdigest()
