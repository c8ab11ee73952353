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
    positive_index = 0 if config.constitutions.strategy == "positive_vs_negative" else None
    # check the strategy/C/k combination now rather than after the base model has been loaded
    sample_constitutions(pset, config.constitutions.strategy, config.constitutions.n, random.Random(0),
                         config.constitutions.names, config.constitutions.k)
    return Plan(pset=pset, templates=templates, halves=halves, eval_queries=eval_queries,
                positive_index=positive_index, base_model=base, notes=notes)


def sample_items(config: "RunConfig", plan: Plan, t: int) -> list[dict[str, Any]]:
    """Every (query, constitution) iteration ``t`` samples, in a fixed order (spec §2.1 step 1): the C
    constitutions of each query of the iteration's half (spec §5.3), drawn from a generator seeded by
    ``(seed, t, query id)``, and the generation prompt with the principles in file order (spec §2.8)."""
    from sami_toolkit.text.constitutions import sample_constitutions
    from sami_toolkit.text.prompts import build_prompt, format_question

    cc = config.constitutions
    items = []
    for q in plan.halves[config.half_for(t)]:
        consts = sample_constitutions(plan.pset, cc.strategy, cc.n, seeded_rng(config.seed, "constitutions", t, q.id),
                                      cc.names, cc.k)
        question = format_question(plan.templates, q.text)
        for j, c in enumerate(consts):
            rendered = c.render(plan.pset)
            items.append({"query_id": q.id, "index": j, "label": c.label(), "constitution": rendered,
                          "items": c.to_dict()["items"],
                          "prompt": build_prompt(plan.templates.generation, constitution=rendered, question=question)})
    return items


def queries_hash(plan: Plan) -> str:
    """Hash of the ids and texts of every pool and held-out query (a resume must see the same data)."""
    import hashlib
    import json

    payload = [[[q.id, q.text] for q in half] for half in plan.halves] + [[[q.id, q.text] for q in plan.eval_queries]]
    return "sha256:" + hashlib.sha256(json.dumps(payload).encode()).hexdigest()
