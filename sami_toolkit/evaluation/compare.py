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

import functools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

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

    @property
    def exit_code(self) -> int:
        """The exit code ``sami-kit eval compare`` ends with for this result (0 pass, 1 regression, 3
        inconclusive, 4 error)."""
        return int(self.gate.exit_code)

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


def _constitution(config: "EvalConfig") -> str:
    """The constitution the judge reads: the config's text, else the principle set's all-positive one."""
    if config.constitution is not None:
        if not config.constitution.strip():
            raise ConfigError("constitution: the text is empty")
        return config.constitution.strip()
    from sami_toolkit.text.principles import load_principle_set

    return positive_constitution(load_principle_set(config.principles), config.principle_names)


def _both_sides(config: "EvalConfig", queries: Sequence[Query], gen_const: Sequence[str], templates: Any,
                registry: "Registry") -> tuple[list[str], list[str]]:
    """Each side's responses (generated under a shuffled constitution, or read from its file), written to the
    output directory so a rerun or ``eval stats`` can see what was judged."""
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
    return candidate, baseline


def _judge_all(config: "EvalConfig", judge: Any, pairs: Sequence[Any], positions: Sequence[Any],
               judge_fn: Any) -> tuple[list[int], list[Any], dict[str, Any] | None]:
    """Judge every pair, or with ``--sequential`` round by round until the verdict is decided: the indices of
    the judged pairs, their outcomes, and the sequential record (None for a fixed-n run)."""
    orders = 2 if config.both_orders else 1
    if not config.sequential.enabled:
        outcomes = with_progress(lambda cb: judge_fn(judge, pairs, seed=config.seed, both_orders=config.both_orders,
                                                     progress=cb, positions=positions),
                                 len(pairs) * orders, "judging")
        return list(range(len(pairs))), outcomes, None
    from sami_toolkit.evaluation.sequential_run import judge_in_rounds

    def judge_round(j: Any, subset: Sequence[Any], **kwargs: Any) -> list[Any]:
        return with_progress(lambda cb: judge_fn(j, subset, progress=cb, **kwargs),
                             len(subset) * orders, "judging (sequential round)")

    by_index, sequential = judge_in_rounds(judge, pairs, positions, config, judge_fn=judge_round)
    judged = [i for i, o in enumerate(by_index) if o is not None]
    return judged, [by_index[i] for i in judged], sequential


def _per_principle(config: "EvalConfig", judge: Any, pairs: Sequence[Any], positions: Sequence[Any],
                   constitution: str, records: list[dict[str, Any]], decision: "GateResult",
                   judge_fn: Any) -> tuple[list[dict[str, Any]], "GateResult", float]:
    """``--per-principle``: one verdict per principle per item (stored in each record), the per-principle table,
    and — with ``principle_gate: all`` — the gate that needs every principle to pass (Holm)."""
    from sami_toolkit.evaluation.per_principle import judge_principles, principle_gate, principle_table, \
        principle_texts

    per, cost = judge_principles(judge, pairs, positions, principle_texts(config, constitution), config,
                                 judge_fn=judge_fn)
    for i, record in enumerate(records):
        record["principles"] = {name: values[i] for name, values in per.items()}
    table = principle_table(per, ties=config.ties, margin=config.margin)
    if config.principle_gate == "all":
        decision = principle_gate(decision, table, min_items=config.min_items)
    return table, decision, cost


def _meta(config: "EvalConfig", judge: Any, constitution: str, unit: str, outcomes: Sequence[Any],
          extra_cost: float, settings: dict[str, Any], *, sequential: dict[str, Any] | None, calibration: Any,
          principles_table: list[dict[str, Any]] | None) -> dict[str, Any]:
    """What the summary says about the run besides the statistics: sides, judge, cost, counts, settings, and the
    sequential, calibration and per-principle records when those ran."""
    from sami_toolkit.judging.pairwise import count_outcomes

    meta = {"candidate": config.candidate.display, "baseline": config.baseline.display,
            "judge": config.judge.name, "judge_model": judge.model_name, "task": config.task,
            "constitution": constitution, "length_unit": unit, "both_orders": config.both_orders,
            "parse": config.parse, "judge_cost": sum(o.cost for o in outcomes) + extra_cost,
            "counts": count_outcomes(outcomes),
            "cached": sum(1 for o in outcomes if o.cached), "stats_settings": settings}
    if sequential is not None:
        meta["sequential"] = sequential
    if calibration is not None:
        meta["calibration"] = calibration.to_dict()
    if principles_table is not None:
        meta["per_principle"] = {"principle_gate": config.principle_gate, "rows": principles_table}
    errors = common_errors(outcomes)
    if errors:
        meta["common_errors"] = errors
    return meta


def run_compare(config: "EvalConfig | Mapping[str, Any]", *, registry: "Registry | None" = None) -> CompareResult:
    """Generate or load both sides, judge every pair and compute statistics, judge health and the gate.

    Judges, samplers and query sources come from ``registry`` (default: the installed plugins, loaded now).
    ``config`` may also be a mapping in the YAML's shape (validated here: a bad field is a ConfigError, exit 2).
    The result's :attr:`CompareResult.exit_code` is the CLI's exit code; errors raise a
    :class:`~sami_toolkit.core.errors.SamiKitError` whose ``exit_code`` is the CLI's (2 config, 4 judge)."""
    from sami_toolkit.evaluation.config import EvalConfig

    if not isinstance(config, EvalConfig):
        from sami_toolkit.core.config import validate_model

        config = validate_model(EvalConfig, dict(config))
    if registry is None:
        from sami_toolkit.plugins.registry import load_plugins

        registry = load_plugins()
    from sami_toolkit.evaluation.probe_run import probe_health
    from sami_toolkit.evaluation.stats import compute_stats, gate, items_from_records, judge_health
    from sami_toolkit.judging.pairwise import ComparisonPair, assign_positions, guarded_judge_pairs
    from sami_toolkit.text.prompts import format_judge_query, get_templates

    # every judging pass reads verdicts with the config's parse (strict, or the paper's substring test, §10.15)
    judge_fn = functools.partial(guarded_judge_pairs, parse=config.parse)
    templates = get_templates(config.task)
    constitution = _constitution(config)
    judge = _judge(config, registry)  # fail fast on a bad judge before any generation
    calibration = None
    if config.calibration is not None:  # judge validity first: a judge that fails it never sees the candidate
        from sami_toolkit.evaluation.calibration import run_calibration

        calibration = run_calibration(judge, config.calibration, task=config.task, constitution=constitution,
                                      seed=config.seed, judge_fn=judge_fn)
        if not calibration.passed:
            return _refused(config, judge, constitution, calibration)
    queries = load_queries(config, registry)
    rng = random.Random(config.seed)
    gen_const = [shuffled(constitution, rng, config.shuffle_principles) for _ in queries]
    judge_const = [shuffled(constitution, rng, config.shuffle_principles) for _ in queries]
    candidate, baseline = _both_sides(config, queries, gen_const, templates, registry)
    pairs = [ComparisonPair(id=q.id, query=format_judge_query(templates, q.text), constitution=jc, candidate=c,
                            baseline=b, task=config.task)
             for q, jc, c, b in zip(queries, judge_const, candidate, baseline)]
    positions = assign_positions(len(pairs), config.seed)  # a full run's slots, also for subsets of the items
    judged, outcomes, sequential = _judge_all(config, judge, pairs, positions, judge_fn)

    len_c, len_b, unit, length_note = _lengths(config, candidate, baseline)
    pairs, queries, positions = ([xs[i] for i in judged] for xs in (pairs, queries, positions))
    len_c, len_b = [len_c[i] for i in judged], [len_b[i] for i in judged]
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
    extra_cost = probe_health(health, judge, pairs, positions, outcomes, len_c, len_b, config, judge_fn=judge_fn)
    decision = gate(stats, metric=config.metric, margin=config.margin, min_items=config.min_items,
                    max_failure_rate=config.max_failure_rate)
    if sequential is not None:
        from sami_toolkit.evaluation.sequential_run import sequential_gate

        decision = sequential_gate(sequential, stats, config)
    principles_table = None
    if config.per_principle:
        principles_table, decision, cost = _per_principle(config, judge, pairs, positions, constitution, records,
                                                          decision, judge_fn)
        extra_cost += cost
    extra_cost += calibration.judge_cost if calibration else 0.0
    meta = _meta(config, judge, constitution, unit, outcomes, extra_cost, settings, sequential=sequential,
                 calibration=calibration, principles_table=principles_table)
    return CompareResult(stats=stats, health=health, gate=decision, records=records, meta=meta)


def _refused(config: "EvalConfig", judge: Any, constitution: str, calibration: Any) -> CompareResult:
    """The result of a judge that failed the calibration preflight: no candidate judged, exit 4 with the numbers."""
    from sami_toolkit.core.errors import ExitCode
    from sami_toolkit.evaluation.stats import GateResult, Items, compute_stats

    stats = compute_stats(Items([], [], []), ties=config.ties, bootstrap=0, seed=config.seed)
    gate_result = GateResult(metric=config.metric, margin=config.margin, threshold=0.5 - config.margin, value=None,
                             ci_low=None, ci_high=None, decision="error", exit_code=int(ExitCode.INFRASTRUCTURE),
                             reason=f"the judge failed the calibration preflight ({'; '.join(calibration.problems)}): "
                                    f"{calibration.line()}; the candidate was not judged",
                             n=0, min_items=config.min_items, max_failure_rate=config.max_failure_rate)
    meta = {"candidate": config.candidate.display, "baseline": config.baseline.display, "judge": config.judge.name,
            "judge_model": judge.model_name, "task": config.task, "constitution": constitution,
            "judge_cost": calibration.judge_cost, "counts": {"wins": 0, "losses": 0, "ties": 0, "failed": 0, "n": 0},
            "cached": 0, "stats_settings": stats_settings(config), "calibration": calibration.to_dict()}
    return CompareResult(stats=stats, health={}, gate=gate_result, records=[], meta=meta)


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
