"""``sami-kit eval compare``: judge a candidate against a baseline on a prompt set and gate on the result.

The pieces, in order: load prompts and both sides' responses (generated with a sampler, or read from a JSONL and
matched by id), build one :class:`~sami_toolkit.judging.pairwise.ComparisonPair` per prompt under the constitution
(principle order shuffled per item, spec §8.2), judge them, compute :mod:`sami_toolkit.evaluation.stats` and the gate, and
write the outputs CI systems read: per-item judgments (JSONL, raw judge text kept), a JSON summary, JUnit XML,
Markdown (for ``$GITHUB_STEP_SUMMARY``) and a self-contained HTML page.

Exit codes (design §6): 0 pass, 1 regression, 3 inconclusive, 2 config, 4 judge/infrastructure/budget.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from sami_toolkit.core.components import Query
from sami_toolkit.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.evaluation.config import EvalConfig, SideConfig
    from sami_toolkit.evaluation.stats import GateResult, WinRateStats


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
def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    from sami_toolkit.evaluation.stats import read_jsonl

    rows = read_jsonl(path)
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: line {i}: expected a JSON object ({what})")
    return rows


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
    rows = _read_jsonl(path, 'a prompt {"id", "prompt"}')
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
    rows = _read_jsonl(path, 'a response {"id", "prompt", "response"}')
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


def load_queries(config: "EvalConfig") -> list[Query]:
    """The prompt set: the configured source, else the prompts stored in the response files."""
    if config.prompts is not None:
        if config.prompts.path is not None:
            return load_prompts_file(config.prompts.path)
        from sami_toolkit.plugins.registry import get_component

        source = get_component("query-sources", config.prompts.name, config.prompts.options,
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
                   templates: Any, label: str, cache_dir: Path | None) -> list[str]:
    """One response per query for one side, generated or read from its file (ids must match exactly)."""
    if side.responses is not None:
        rows = load_responses_file(side.responses)
        want = {q.id for q in queries}
        if set(rows) != want:
            raise _mismatch(f"{side.responses}", set(rows), "the prompt set", want)
        return [rows[q.id]["response"] for q in queries]
    from sami_toolkit.evaluation.evaluators import cached_generate, generate
    from sami_toolkit.plugins.registry import get_component

    sampler = get_component("samplers", side.sampler.name, side.sampler.options, where=f"{label}.sampler.options")
    try:
        if cache_dir is not None:
            return cached_generate(cache_dir, sampler, side.model, prompts, task=task, templates=templates,
                                   label=f"generating {label}")
        return generate(sampler, side.model, prompts, task=task, templates=templates, label=f"generating {label}")
    finally:
        sampler.close()


# ------------------------------------------------------------------------------------------------ run
def _judge(config: "EvalConfig") -> Any:
    from sami_toolkit.plugins.registry import get_component, get_registry

    options = dict(config.judge.options)
    if config.max_cost is not None:
        cls = get_registry().get("judges", config.judge.name)
        if "max_cost" not in cls.Options.model_fields:
            raise ConfigError(f"judge '{config.judge.name}' has no max_cost option, so --max-cost cannot be enforced",
                              hint="use a judge with a budget (e.g. litellm) or drop --max-cost")
        options["max_cost"] = config.max_cost
    return get_component("judges", config.judge.name, options, where="judge.options")


def guarded_judge_pairs(judge: Any, pairs: Sequence[Any], **kwargs: Any) -> list[Any]:
    """:func:`~sami_toolkit.judging.pairwise.judge_pairs`, with an unexpected exception from a (plugin) judge turned into
    one InfrastructureError line (exit 4) naming the judge, instead of a traceback."""
    from sami_toolkit.core.errors import InfrastructureError, SamiKitError
    from sami_toolkit.judging.pairwise import judge_pairs

    try:
        return judge_pairs(judge, pairs, **kwargs)
    except SamiKitError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin judge's bug must not print a traceback in CI
        raise InfrastructureError(f"judge '{judge.name}' failed: {type(exc).__name__}: {exc}") from exc


def _lengths(config: "EvalConfig", candidate: list[str], baseline: list[str]) -> tuple[list[int], list[int], str,
                                                                                      str | None]:
    """Token lengths with the configured tokenizer; by default the candidate's (else the baseline's) model
    tokenizer, falling back to words with a note if that tokenizer cannot be loaded."""
    from sami_toolkit.core.errors import InfrastructureError
    from sami_toolkit.evaluation.evaluators import token_lengths

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


def run_compare(config: "EvalConfig") -> CompareResult:
    """Generate or load both sides, judge every pair and compute statistics, judge health and the gate."""
    from sami_toolkit.evaluation.evaluators import (
        generation_prompts,
        judgment_records,
        positive_constitution,
        shuffled,
        write_jsonl,
    )
    from sami_toolkit.judging.pairwise import ComparisonPair, count_outcomes
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
    judge = _judge(config)  # fail fast on a bad judge before any generation
    queries = load_queries(config)
    rng = random.Random(config.seed)
    gen_const = [shuffled(constitution, rng, config.shuffle_principles) for _ in queries]
    judge_const = [shuffled(constitution, rng, config.shuffle_principles) for _ in queries]
    out_dir = config.output.dir
    needs_prompts = config.candidate.model is not None or config.baseline.model is not None
    prompts = generation_prompts(templates, queries, gen_const) if needs_prompts else []
    candidate = side_responses(config.candidate, queries, prompts, task=config.task, templates=templates,
                               label="candidate", cache_dir=None)
    baseline = side_responses(config.baseline, queries, prompts, task=config.task, templates=templates,
                              label="baseline", cache_dir=out_dir / "cache" if out_dir else None)
    if out_dir is not None:
        for name, resp in (("candidate", candidate), ("baseline", baseline)):
            write_jsonl(out_dir / f"{name}_responses.jsonl",
                        [{"id": q.id, "prompt": q.text, "response": r} for q, r in zip(queries, resp)])

    pairs = [ComparisonPair(id=q.id, query=format_judge_query(templates, q.text), constitution=jc, candidate=c,
                            baseline=b, task=config.task)
             for q, jc, c, b in zip(queries, judge_const, candidate, baseline)]
    from sami_toolkit.evaluation.evaluators import with_progress

    outcomes = with_progress(lambda cb: guarded_judge_pairs(judge, pairs, seed=config.seed,
                                                             both_orders=config.both_orders, progress=cb),
                              len(pairs) * (2 if config.both_orders else 1), "judging")
    len_c, len_b, unit, length_note = _lengths(config, candidate, baseline)
    records = judgment_records(pairs, outcomes, len_c, len_b, length_unit=unit, prompts=[q.text for q in queries])
    items = items_from_records(records)
    stats = compute_stats(items, ties=config.ties, bootstrap=config.bootstrap, seed=config.seed)
    if length_note:
        stats.notes.append(length_note)
    health = judge_health(items, judge_model=judge.model_name,
                          candidate_model=config.candidate.model or config.candidate.label,
                          baseline_model=config.baseline.model or config.baseline.label)
    decision = gate(stats, metric=config.metric, margin=config.margin)
    meta = {"candidate": config.candidate.display, "baseline": config.baseline.display,
            "judge": config.judge.name, "judge_model": judge.model_name, "task": config.task,
            "constitution": constitution, "length_unit": unit, "both_orders": config.both_orders,
            "judge_cost": sum(o.cost for o in outcomes), "counts": count_outcomes(outcomes)}
    return CompareResult(stats=stats, health=health, gate=decision, records=records, meta=meta)


def write_outputs(result: CompareResult, config: "EvalConfig") -> list[Path]:
    """Write every configured output file; returns the paths written."""
    from sami_toolkit.evaluation.evaluators import write_jsonl

    out = config.output
    written: list[Path] = []
    judgments = out.judgments or (out.dir / "judgments.jsonl" if out.dir else None)
    if judgments is not None:
        write_jsonl(judgments, result.records)
        written.append(judgments)
    json_path = out.summary or (out.dir / "summary.json" if out.dir else None)
    targets = [(json_path, lambda: json.dumps(result.summary(), indent=2, default=str)),
               (out.junit, lambda: render_junit(result)), (out.markdown, lambda: render_markdown(result)),
               (out.html, lambda: render_html(result))]
    for path, render in targets:
        if path is None:
            continue
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(), encoding="utf-8")
        written.append(path)
    return written


# ------------------------------------------------------------------------------------------------ renderers
def _pct(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def _ci(lo: float | None, hi: float | None) -> str:
    return "n/a" if lo is None or hi is None else f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def stats_rows(stats: "WinRateStats") -> list[tuple[str, str, str, str]]:
    """(metric, value, ±SEM, 95% CI) rows shared by the console, Markdown and HTML renderers."""
    def sem(v: float | None) -> str:
        return "n/a" if v is None else f"±{100 * v:.1f}"

    return [
        (f"win rate (ties={stats.tie_policy})", _pct(stats.win_rate), sem(stats.sem), _ci(stats.ci_low, stats.ci_high)),
        ("balanced win rate (Fig. 2b)", _pct(stats.balanced_win_rate), sem(stats.balanced_sem),
         _ci(stats.balanced_ci_low, stats.balanced_ci_high)),
        ("logistic LC win rate (Tables 2-3)", _pct(stats.logistic_win_rate), sem(stats.logistic_sem),
         _ci(stats.logistic_ci_low, stats.logistic_ci_high)),
        ("LC GLM win rate (bootstrap CI)", _pct(stats.lc_win_rate), sem(stats.lc_sem),
         _ci(stats.lc_ci_low, stats.lc_ci_high)),
    ]


def health_rows(health: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("failure rate", f"{_pct(health.get('failure_rate'))} ({health.get('failures', 0)} of {health.get('n', 0)})"),
            ("tie rate", _pct(health.get("tie_rate"))),
            ("first-position (A) win rate", f"{_pct(health.get('first_position_rate'))} "
                                             f"(n={health.get('first_position_n', 0)}; 50% is unbiased)")]
    if health.get("position_consistency") is not None:
        rows.append(("position consistency (both orders)",
                     f"{_pct(health['position_consistency'])} (n={health['position_consistency_n']})"))
    return rows


def print_summary(result: CompareResult, console: Any) -> None:
    """Rich tables on stderr: statistics, judge health, gate verdict."""
    from rich.table import Table

    s = result.stats
    table = Table(title=f"{result.meta.get('candidate')} vs {result.meta.get('baseline')} "
                        f"(judge: {result.meta.get('judge_model')})")
    for col in ("metric", "value", "SEM", "95% CI"):
        table.add_column(col)
    for row in stats_rows(s):
        table.add_row(*row)
    console.print(table)
    console.print(f"n={s.n} scored (wins {s.wins} / ties {s.ties} / losses {s.losses}), failures={s.failures}, "
                  f"t={s.t if s.t is None else round(s.t, 2)}, p={s.p_value if s.p_value is None else f'{s.p_value:.3g}'}")
    health = Table(title="judge health")
    health.add_column("check")
    health.add_column("value")
    for row in health_rows(result.health):
        health.add_row(*row)
    console.print(health)
    for warning in result.health.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}")
    for note in s.notes:
        console.print(f"note: {note}")
    g = result.gate
    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[g.decision]
    console.print(f"[bold {colour}]gate {g.decision.upper()}[/bold {colour}] on {g.metric} "
                  f"(margin {g.margin:g}, threshold {g.threshold:.3f}): {g.reason} -> exit {g.exit_code}")


def render_markdown(result: CompareResult) -> str:
    """GitHub-flavoured Markdown for ``$GITHUB_STEP_SUMMARY`` (model text is not included, only numbers)."""
    s, g = result.stats, result.gate
    icon = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️"}[g.decision]
    lines = [f"## SAMI gate: {icon} {g.decision.upper()}", "",
             f"**{_md(str(result.meta.get('candidate')))}** vs **{_md(str(result.meta.get('baseline')))}**, judge "
             f"`{_md(str(result.meta.get('judge_model')))}`: {g.reason} (metric `{g.metric}`, margin {g.margin:g}).",
             "", "| metric | value | SEM | 95% CI |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in stats_rows(s)]
    lines += ["", f"n = {s.n} scored (wins {s.wins}, ties {s.ties}, losses {s.losses}); failures = {s.failures}.", "",
              "| judge health | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in health_rows(result.health)]
    for w in result.health.get("warnings", []):
        lines.append(f"\n> ⚠️ {_md(w)}")
    for note in s.notes:
        lines.append(f"\n> note: {_md(note)}")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """Neutralise Markdown/HTML in names that end up in the summary."""
    import html

    return html.escape(text).replace("|", "\\|")


def render_junit(result: CompareResult) -> str:
    """JUnit XML: one testsuite with one testcase (the gate); a regression is a <failure>, inconclusive is
    reported as <skipped> so CI dashboards show it without failing the suite on its own."""
    from xml.sax.saxutils import escape, quoteattr

    g, s = result.gate, result.stats
    name = f"{g.metric} of {result.meta.get('candidate')} vs {result.meta.get('baseline')} >= {g.threshold:.3f}"
    details = escape(json.dumps({k: v for k, v in result.summary().items() if k not in ("constitution",)},
                                default=str, indent=1))
    failures = 1 if g.decision == "fail" else 0
    skipped = 1 if g.decision == "inconclusive" else 0
    body = ""
    if g.decision == "fail":
        body = f"<failure message={quoteattr(g.reason)} type=\"regression\">{details}</failure>"
    elif g.decision == "inconclusive":
        body = f"<skipped message={quoteattr('inconclusive: ' + g.reason)}/>"
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            f"<testsuites><testsuite name=\"sami-kit eval compare\" tests=\"1\" failures=\"{failures}\" "
            f"errors=\"0\" skipped=\"{skipped}\">\n"
            f"<testcase classname=\"sami_kit.gate\" name={quoteattr(name)}>{body}"
            f"<system-out>{details}</system-out></testcase>\n"
            f"</testsuite></testsuites>\n")


def render_html(result: CompareResult) -> str:
    """A self-contained page: gate, statistics, judge health and every judged pair (all model text escaped)."""
    from sami_toolkit.report.run_page import esc, html_page, table_html

    g = result.gate
    parts = [f"<h1>SAMI comparison: {esc(result.meta.get('candidate'))} vs {esc(result.meta.get('baseline'))}</h1>",
             f"<p class='gate {esc(g.decision)}'>Gate <b>{esc(g.decision.upper())}</b> on {esc(g.metric)}: "
             f"{esc(g.reason)}</p>",
             f"<p>Judge: {esc(result.meta.get('judge_model'))}. Lengths in {esc(result.meta.get('length_unit'))}.</p>",
             "<h2>Statistics</h2>", table_html(["metric", "value", "SEM", "95% CI"], stats_rows(result.stats)),
             "<h2>Judge health</h2>", table_html(["check", "value"], health_rows(result.health))]
    for w in result.health.get("warnings", []):
        parts.append(f"<p class='warn'>warning: {esc(w)}</p>")
    parts.append(f"<h2>Constitution</h2><pre>{esc(result.meta.get('constitution', ''))}</pre>")
    parts.append("<h2>Judged pairs</h2>")
    label = {1.0: "candidate wins", 0.0: "baseline wins", 0.5: "tie", None: "FAILED"}
    for r in result.records:
        raw = "\n---\n".join(r.get("raw") or [])
        parts.append(
            "<details><summary>" + esc(f"{r['id']}: {label.get(r['outcome'], r['outcome'])}") + "</summary>"
            f"<p><b>Prompt</b></p><pre>{esc(r.get('prompt', ''))}</pre>"
            "<div class='pair'>"
            f"<div><p><b>Candidate</b> ({esc(r.get('len_test'))})</p><pre>{esc(r.get('candidate', ''))}</pre></div>"
            f"<div><p><b>Baseline</b> ({esc(r.get('len_baseline'))})</p><pre>{esc(r.get('baseline', ''))}</pre></div>"
            "</div>"
            f"<p><b>Judge</b> (candidate in slot {esc(r.get('candidate_position'))})</p><pre>{esc(raw)}</pre>"
            + (f"<p class='warn'>error: {esc(r.get('error'))}</p>" if r.get("error") else "") + "</details>")
    return html_page("SAMI comparison", "\n".join(parts))
