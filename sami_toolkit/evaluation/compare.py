"""``sami-kit eval compare``: judge a candidate against a baseline on a prompt set and gate on the result.

The pieces, in order: load prompts and both sides' responses (generated with a sampler, or read from a JSONL and
matched by id), build one :class:`~sami_toolkit.judging.pairwise.ComparisonPair` per prompt under the constitution
(principle order shuffled per item, spec §8.2), judge them, and compute :mod:`sami_toolkit.evaluation.stats` and
the gate, all in one :class:`CompareResult`.  Writing what CI systems read (per-item judgments, JSON summary, JUnit
XML, Markdown for ``$GITHUB_STEP_SUMMARY``, an HTML page) is :mod:`sami_toolkit.report.ci`'s job: evaluation
computes, report renders.

Exit codes (design §6): 0 pass, 1 regression, 3 inconclusive, 2 config, 4 judge/infrastructure/budget — also when
more than ``max_failure_rate`` of the judgments failed (an unreachable judge fails every one).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.io import atomic_write_jsonl, read_jsonl_objects
from sami_toolkit.core.records import Query
from sami_toolkit.evaluation.stats.items import STATS_SETTINGS_KEY
from sami_toolkit.evaluation.win_rate import judgment_records
from sami_toolkit.sampling.generation import (
    cached_generate,
    generate,
    generation_prompts,
    positive_constitution,
    shuffled,
    token_lengths,
    with_progress,
)

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.evaluation.config import EvalConfig, SideConfig
    from sami_toolkit.evaluation.stats import GateResult, WinRateStats
    from sami_toolkit.plugins.registry import Registry


@dataclass
class CompareResult:
    """Everything the renderers need."""

    stats: "WinRateStats"
    health: dict[str, Any]
    gate: "GateResult"
    records: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object: statistics (rates as fractions), gate, judge health and run metadata."""
        return {**self.stats.to_dict(), "gate": self.gate.to_dict(), "judge_health": self.health, **self.meta}


# ------------------------------------------------------------------------------------------------ inputs
def _ids(rows: Sequence[dict[str, Any]], path: Path) -> list[str]:
    ids = []
    for i, row in enumerate(rows, start=1):
        if "id" not in row:
            raise ConfigError(f"{path}: line {i}: missing 'id'")
        ids.append(str(row["id"]))
    dupes = sorted({x for x in ids if ids.count(x) > 1})
    if dupes:
        raise ConfigError(f"{path}: duplicate ids: {', '.join(dupes[:10])}")
    return ids


def load_prompts_file(path: Path) -> list[Query]:
    """Prompts JSONL: ``{"id", "prompt"}`` per line (``"text"`` also accepted)."""
    rows = read_jsonl_objects(path, 'a prompt {"id", "prompt"}')
    ids = _ids(rows, path)
    out = []
    for i, (row, qid) in enumerate(zip(rows, ids), start=1):
        text = row.get("prompt", row.get("text"))
        if not isinstance(text, str):
            raise ConfigError(f"{path}: line {i}: missing string field 'prompt'")
        out.append(Query(id=qid, text=text, meta={k: v for k, v in row.items() if k not in ("id", "prompt", "text")}))
    if not out:
        raise ConfigError(f"{path}: no prompts in the file")
    return out


def load_responses_file(path: Path) -> dict[str, dict[str, Any]]:
    """Responses JSONL: ``{"id", "prompt", "response"}`` per line; returns id -> row."""
    rows = read_jsonl_objects(path, 'a response {"id", "prompt", "response"}')
    ids = _ids(rows, path)
    for i, row in enumerate(rows, start=1):
        if not isinstance(row.get("response"), str):
            raise ConfigError(f"{path}: line {i}: missing string field 'response'")
    if not rows:
        raise ConfigError(f"{path}: no responses in the file")
    return dict(zip(ids, rows))


def _mismatch(what_a: str, ids_a: set[str], what_b: str, ids_b: set[str]) -> ConfigError:
    only_a, only_b = sorted(ids_a - ids_b), sorted(ids_b - ids_a)
    parts = []
    if only_a:
        parts.append(f"only in {what_a}: {', '.join(only_a[:10])}{' ...' if len(only_a) > 10 else ''}")
    if only_b:
        parts.append(f"only in {what_b}: {', '.join(only_b[:10])}{' ...' if len(only_b) > 10 else ''}")
    return ConfigError(f"ids do not match ({'; '.join(parts)})",
                       hint="both sides must answer the same prompts, with the same ids")


def load_queries(config: "EvalConfig", registry: "Registry") -> list[Query]:
    """The prompt set: the configured source, else the prompts stored in the response files."""
    if config.prompts is not None:
        if config.prompts.path is not None:
            return load_prompts_file(config.prompts.path)
        source = registry.create("query-sources", config.prompts.name, config.prompts.options,
                                 where="prompts.options")
        queries = list(source.load())
        if not queries:
            raise ConfigError(f"query source '{config.prompts.name}' returned no queries")
        return queries
    for side in (config.candidate, config.baseline):
        if side.responses is not None:
            rows = load_responses_file(side.responses)
            queries = []
            for qid, row in rows.items():
                if not isinstance(row.get("prompt"), str):
                    raise ConfigError(f"{side.responses}: id {qid}: missing 'prompt' (needed when no prompt set "
                                      "is given)")
                queries.append(Query(id=qid, text=row["prompt"]))
            return queries
    raise ConfigError("no prompts: give --prompts FILE.jsonl or --source NAME (prompts.path / prompts.name)")


def side_responses(side: "SideConfig", queries: Sequence[Query], prompts: Sequence[str], *, task: str,
                   templates: Any, label: str, cache_dir: Path | None, registry: "Registry") -> list[str]:
    """One response per query for one side, generated or read from its file (ids must match exactly)."""
    if side.responses is not None:
        rows = load_responses_file(side.responses)
        want = {q.id for q in queries}
        if set(rows) != want:
            raise _mismatch(f"{side.responses}", set(rows), "the prompt set", want)
        return [rows[q.id]["response"] for q in queries]
    sampler = registry.create("samplers", side.sampler.name, side.sampler.options, where=f"{label}.sampler.options")
    try:
        if cache_dir is not None:
            return cached_generate(cache_dir, sampler, side.model, prompts, task=task, templates=templates,
                                   label=f"generating {label}")
        return generate(sampler, side.model, prompts, task=task, templates=templates, label=f"generating {label}")
    finally:
        sampler.close()


# ------------------------------------------------------------------------------------------------ run
def _judge(config: "EvalConfig", registry: "Registry") -> Any:
    options = dict(config.judge.options)
    if config.max_cost is not None:
        cls = registry.get("judges", config.judge.name)
        if "max_cost" not in cls.Options.model_fields:
            raise ConfigError(f"judge '{config.judge.name}' has no max_cost option, so --max-cost cannot be enforced",
                              hint="use a judge with a budget (e.g. litellm) or drop --max-cost")
        options["max_cost"] = config.max_cost
    return registry.create("judges", config.judge.name, options, where="judge.options")


def _lengths(config: "EvalConfig", candidate: list[str], baseline: list[str]) -> tuple[list[int], list[int], str,
                                                                                      str | None]:
    """Token lengths with the configured tokenizer; by default the candidate's (else the baseline's) model
    tokenizer, falling back to words with a note if that tokenizer cannot be loaded."""
    from sami_toolkit.core.errors import InfrastructureError

    if config.length_tokenizer is not None:  # asked for explicitly: failing to load it is an error
        len_c, unit = token_lengths(candidate, config.length_tokenizer)
        return len_c, token_lengths(baseline, config.length_tokenizer)[0], unit, None
    ref = config.candidate.model or config.baseline.model
    if ref is not None:
        try:
            len_c, unit = token_lengths(candidate, ref)
            return len_c, token_lengths(baseline, ref)[0], unit, None
        except InfrastructureError as exc:
            note = f"lengths counted in words: the tokenizer of '{ref}' could not be loaded ({exc.message})"
    else:
        note = None
    len_c, unit = token_lengths(candidate, None)
    return len_c, token_lengths(baseline, None)[0], unit, note


def run_compare(config: "EvalConfig", *, registry: "Registry | None" = None) -> CompareResult:
    """Generate or load both sides, judge every pair and compute statistics, judge health and the gate.

    Judges, samplers and query sources come from ``registry`` (default: the installed plugins, loaded now)."""
    if registry is None:
        from sami_toolkit.plugins.registry import load_plugins

        registry = load_plugins()
    from sami_toolkit.judging.pairwise import ComparisonPair, count_outcomes, guarded_judge_pairs
    from sami_toolkit.text.prompts import format_judge_query, get_templates
    from sami_toolkit.evaluation.stats import compute_stats, gate, items_from_records, judge_health

    templates = get_templates(config.task)
    if config.constitution is not None:
        if not config.constitution.strip():
            raise ConfigError("constitution: the text is empty")
        constitution = config.constitution.strip()
    else:
        from sami_toolkit.text.principles import load_principle_set

        constitution = positive_constitution(load_principle_set(config.principles), config.principle_names)
    judge = _judge(config, registry)  # fail fast on a bad judge before any generation
    queries = load_queries(config, registry)
    rng = random.Random(config.seed)
    gen_const = [shuffled(constitution, rng, config.shuffle_principles) for _ in queries]
    judge_const = [shuffled(constitution, rng, config.shuffle_principles) for _ in queries]
    out_dir = config.output.dir
    needs_prompts = config.candidate.model is not None or config.baseline.model is not None
    prompts = generation_prompts(templates, queries, gen_const) if needs_prompts else []
    candidate = side_responses(config.candidate, queries, prompts, task=config.task, templates=templates,
                               label="candidate", cache_dir=None, registry=registry)
    baseline = side_responses(config.baseline, queries, prompts, task=config.task, templates=templates,
                              label="baseline", cache_dir=out_dir / "cache" if out_dir else None,
                              registry=registry)
    if out_dir is not None:
        for name, resp in (("candidate", candidate), ("baseline", baseline)):
            atomic_write_jsonl(out_dir / f"{name}_responses.jsonl",
                               [{"id": q.id, "prompt": q.text, "response": r} for q, r in zip(queries, resp)])

    pairs = [ComparisonPair(id=q.id, query=format_judge_query(templates, q.text), constitution=jc, candidate=c,
                            baseline=b, task=config.task)
             for q, jc, c, b in zip(queries, judge_const, candidate, baseline)]
    outcomes = with_progress(lambda cb: guarded_judge_pairs(judge, pairs, seed=config.seed,
                                                             both_orders=config.both_orders, progress=cb),
                              len(pairs) * (2 if config.both_orders else 1), "judging")
    len_c, len_b, unit, length_note = _lengths(config, candidate, baseline)
    records = judgment_records(pairs, outcomes, len_c, len_b, length_unit=unit, prompts=[q.text for q in queries])
    settings = stats_settings(config)
    for record in records:  # `eval stats` on this file reuses them, so it reproduces these numbers exactly
        record[STATS_SETTINGS_KEY] = dict(settings)
    items = items_from_records(records)
    stats = compute_stats(items, **settings)
    if length_note:
        stats.notes.append(length_note)
    health = judge_health(items, judge_model=judge.model_name,
                          candidate_model=config.candidate.model or config.candidate.label,
                          baseline_model=config.baseline.model or config.baseline.label)
    decision = gate(stats, metric=config.metric, margin=config.margin, min_items=config.min_items,
                    max_failure_rate=config.max_failure_rate)
    meta = {"candidate": config.candidate.display, "baseline": config.baseline.display,
            "judge": config.judge.name, "judge_model": judge.model_name, "task": config.task,
            "constitution": constitution, "length_unit": unit, "both_orders": config.both_orders,
            "judge_cost": sum(o.cost for o in outcomes), "counts": count_outcomes(outcomes),
            "cached": sum(1 for o in outcomes if o.cached), "stats_settings": settings}
    errors = common_errors(outcomes)
    if errors:
        meta["common_errors"] = errors
    return CompareResult(stats=stats, health=health, gate=decision, records=records, meta=meta)


def stats_settings(config: "EvalConfig") -> dict[str, Any]:
    """The settings every statistic depends on beyond the items themselves (the tie policy, the bootstrap's
    replicates and seed): written into each judgment row so ``eval stats`` can reproduce compare's numbers."""
    return {"ties": config.ties, "bootstrap": config.bootstrap, "seed": config.seed}


def common_errors(outcomes: Sequence[Any], top: int = 3) -> list[dict[str, Any]]:
    """The most frequent judgment errors, ``[{"error", "count"}]``: what a failure-rate error (exit 4) shows, so
    "connection refused" or a bad key is on the console rather than only in the judgments file."""
    from collections import Counter

    counts = Counter(o.error for o in outcomes if o.outcome is None and o.error)
    return [{"error": text, "count": n} for text, n in counts.most_common(top)]
