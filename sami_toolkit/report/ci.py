"""What ``sami-kit eval compare`` and ``eval stats`` show and write for CI: the console summary, Markdown for
``$GITHUB_STEP_SUMMARY``, JUnit XML (one testcase: the gate), a self-contained HTML page, the JSON summary and the
per-item judgments.

The numbers come from :class:`~sami_toolkit.evaluation.compare.CompareResult`; nothing here computes a statistic.
Model text only reaches the HTML page, escaped; the Markdown carries numbers and escaped names only.

Everything written or printed goes through :mod:`sami_toolkit.core.secrets` first (issue 14 §4): a judge server
that echoes the ``Authorization`` header puts the key into a judgment's ``error`` or ``raw`` text, and from there
it would reach the judgments file, the JSON summary, the JUnit details and the HTML page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sami_toolkit.core.io import atomic_write_jsonl, atomic_write_text
from sami_toolkit.core.secrets import scrub, scrub_data
from sami_toolkit.report.html import esc, html_page, table_html

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.evaluation.compare import CompareResult
    from sami_toolkit.evaluation.config import EvalConfig
    from sami_toolkit.evaluation.stats import WinRateStats


def write_outputs(result: "CompareResult", config: "EvalConfig") -> list[Path]:
    """Write every configured output file (each atomically); returns the paths written."""
    out = config.output
    written: list[Path] = []
    judgments = out.judgments or (out.dir / "judgments.jsonl" if out.dir else None)
    if judgments is not None:
        atomic_write_jsonl(judgments, scrub_data(result.records))  # type: ignore[arg-type]
        written.append(judgments)
    json_path = out.summary or (out.dir / "summary.json" if out.dir else None)
    targets = [(json_path, lambda: render_json(result)),
               (out.junit, lambda: render_junit(result)), (out.markdown, lambda: render_markdown(result)),
               (out.html, lambda: render_html(result))]
    for path, render in targets:
        if path is None:
            continue
        written.append(atomic_write_text(path, render()))
    return written


# ------------------------------------------------------------------------------------------------ renderers
def clean_summary(result: "CompareResult") -> dict[str, Any]:
    """The JSON summary with every secret masked (``--json``, summary.json, the JUnit details)."""
    return scrub_data(result.summary())  # type: ignore[return-value]


def render_json(result: "CompareResult") -> str:
    return json.dumps(clean_summary(result), indent=2, default=str)


#: how each decision is shown: console colour, Markdown icon
_STYLE = {"pass": ("green", "✅"), "fail": ("red", "❌"), "inconclusive": ("yellow", "⚠️"),
          "error": ("red", "🛑")}


def _pct(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def _ci(lo: float | None, hi: float | None) -> str:
    return "n/a" if lo is None or hi is None else f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def stats_rows(stats: "WinRateStats") -> list[tuple[str, str, str, str]]:
    """(metric, value, ±SEM, 95% CI) rows shared by the console, Markdown and HTML renderers."""
    def sem(v: float | None) -> str:
        return "n/a" if v is None else f"±{100 * v:.1f}"

    method = stats.lc_ci_method or "bootstrap"
    lc_label = ("LC GLM win rate (bootstrap CI)" if method.startswith("bootstrap")
                else "LC GLM win rate (Wilson CI: one outcome)")

    return [
        (f"win rate (ties={stats.tie_policy})", _pct(stats.win_rate), sem(stats.sem), _ci(stats.ci_low, stats.ci_high)),
        ("balanced win rate (Fig. 2b)", _pct(stats.balanced_win_rate), sem(stats.balanced_sem),
         _ci(stats.balanced_ci_low, stats.balanced_ci_high)),
        ("logistic LC win rate (Tables 2-3; fit SE)", _pct(stats.logistic_win_rate), sem(stats.logistic_sem),
         _ci(stats.logistic_ci_low, stats.logistic_ci_high)),
        (lc_label, _pct(stats.lc_win_rate), sem(stats.lc_sem), _ci(stats.lc_ci_low, stats.lc_ci_high)),
        ("SC win rate (length + markdown; bootstrap CI)" if (stats.sc_ci_method or "bootstrap").startswith("bootstrap")
         else "SC win rate (Wilson CI: one outcome)", _pct(stats.sc_win_rate), sem(stats.sc_sem),
         _ci(stats.sc_ci_low, stats.sc_ci_high)),
    ]


def health_rows(health: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("failure rate", f"{_pct(health.get('failure_rate'))} ({health.get('failures', 0)} of {health.get('n', 0)})"),
            ("tie rate", _pct(health.get("tie_rate"))),
            ("first-position (A) win rate", f"{_pct(health.get('first_position_rate'))} "
                                             f"(n={health.get('first_position_n', 0)}; 50% is unbiased)")]
    if health.get("position_consistency") is not None:
        rows.append(("position consistency (both orders)",
                     f"{_pct(health['position_consistency'])} (n={health['position_consistency_n']})"))
    if health.get("position_flip_rate") is not None:
        rows.append(("position-flip rate (probe)", f"{_pct(health['position_flip_rate'])} "
                                                   f"(n={health['position_flip_n']}; {health.get('position_flip_source', '')})"))
    if health.get("length_correlation") is not None:
        rows.append(("verdict vs length difference", f"r = {health['length_correlation']:+.2f} "
                                                     f"(p = {health['length_correlation_p']:.2g}, "
                                                     f"n={health['length_correlation_n']})"))
    if health.get("longer_wins_rate") is not None:
        rows.append(("longer response wins", f"{_pct(health['longer_wins_rate'])} (n={health['longer_wins_n']} "
                                             "decisive, unequal lengths)"))
    return rows


def sequential_rows(meta: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(round, items judged, win rate, repeated 95% CI, decision) per look of a sequential gate."""
    seq = meta.get("sequential") or {}
    return [(f"{look['round']}/{seq.get('rounds')}", f"{look['n_judged']}", _pct(look.get("value")),
             _ci(look.get("ci_low"), look.get("ci_high")), str(look.get("decision")))
            for look in seq.get("looks", [])]


def sequential_line(meta: dict[str, Any]) -> str:
    seq = meta.get("sequential") or {}
    if not seq:
        return ""
    design = seq.get("design") or {}
    return (f"sequential gate ({design.get('spending')} alpha spending, alpha {design.get('alpha')}): stopped at "
            f"round {seq['stopped_round']} of {seq['rounds']}; {seq['judge_calls']} of {seq['judge_calls_max']} "
            f"judge calls made, {seq['judge_calls_saved']} saved")


def principle_rows(meta: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(principle, n, win rate, 95% CI, Holm-adjusted pass p, verdict) per principle."""
    per = meta.get("per_principle") or {}
    return [(str(r["principle"]), str(r["n"]), _pct(r.get("win_rate")), _ci(r.get("ci_low"), r.get("ci_high")),
             f"{r['p_pass_holm']:.3g}", str(r["verdict"])) for r in per.get("rows", [])]


def calibration_line(meta: dict[str, Any]) -> str:
    cal = meta.get("calibration")
    if not cal:
        return ""

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    return (f"judge calibration ({cal['pairs']} labelled pairs, both orders): accuracy {f(cal['accuracy'])} "
            f"(floor {cal['min_accuracy']:.2f}), Cohen's kappa {f(cal['kappa'])} (floor {cal['min_kappa']:.2f}), "
            f"position consistency {f(cal['position_consistency'])} (floor {cal['min_consistency']:.2f}): "
            f"{'passed' if cal['passed'] else 'FAILED'}")


def cost_line(meta: dict[str, Any]) -> str:
    """``judge cost $0.0123; 40 of 60 judgments from the cache`` (what a rerun pays for, and what it skipped)."""
    counts = meta.get("counts") or {}
    total = counts.get("n", 0)
    cached = meta.get("cached", 0)
    return (f"judge cost ${float(meta.get('judge_cost') or 0.0):.4f}; {cached} of {total} judged item(s) from the "
            "cache")


def stats_table(stats: "WinRateStats", title: str) -> Any:
    """The metric / value / SEM / 95% CI table of one set of statistics (``eval compare`` and ``eval stats``)."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("metric", "value", "SEM", "95% CI"):
        table.add_column(col)
    for row in stats_rows(stats):
        table.add_row(*row)
    return table


def print_summary(result: "CompareResult", console: Any) -> None:
    """Rich tables on stderr: statistics, judge health and its warnings, cost and cache hits, the gate verdict
    (warnings are printed here, not only in the HTML page: a CI log is what people read)."""
    from rich.table import Table

    s = result.stats
    console.print(stats_table(s, f"{result.meta.get('candidate')} vs {result.meta.get('baseline')} "
                                 f"(judge: {result.meta.get('judge_model')})"))
    console.print(f"n={s.n} scored (wins {s.wins} / ties {s.ties} / losses {s.losses}), failures={s.failures}, "
                  f"t={s.t if s.t is None else round(s.t, 2)}, p={s.p_value if s.p_value is None else f'{s.p_value:.3g}'}")
    health = Table(title="judge health")
    health.add_column("check")
    health.add_column("value")
    for row in health_rows(result.health):
        health.add_row(*row)
    console.print(health)
    from rich.markup import escape

    for warning in result.health.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {escape(scrub(warning))}")
    for note in s.notes:
        console.print(f"note: {escape(scrub(note))}")
    console.print(cost_line(result.meta))
    if result.meta.get("calibration"):
        console.print(escape(calibration_line(result.meta)))
    for title, headers, rows in (("sequential gate", ("round", "judged", "win rate", "repeated 95% CI", "decision"),
                                  sequential_rows(result.meta)),
                                 ("per-principle verdicts", ("principle", "n", "win rate", "95% CI", "Holm p (pass)",
                                                             "verdict"), principle_rows(result.meta))):
        if rows:
            table = Table(title=title)
            for col in headers:
                table.add_column(col)
            for row in rows:
                table.add_row(*(escape(c) for c in row))
            console.print(table)
    if result.meta.get("sequential"):
        console.print(sequential_line(result.meta))
    g = result.gate
    if g.decision == "error":
        for row in result.meta.get("common_errors", []):
            console.print(f"[red]error[/red] ({row['count']}x): {escape(scrub(str(row['error'])))}")
    colour = _STYLE[g.decision][0]
    console.print(f"[bold {colour}]gate {g.decision.upper()}[/bold {colour}] on {g.metric} "
                  f"(margin {g.margin:g}, threshold {g.threshold:.3f}): {escape(g.reason)} -> exit {g.exit_code}")


def render_markdown(result: "CompareResult") -> str:
    """GitHub-flavoured Markdown for ``$GITHUB_STEP_SUMMARY`` (model text is not included, only numbers)."""
    s, g = result.stats, result.gate
    icon = _STYLE[g.decision][1]
    lines = [f"## SAMI gate: {icon} {g.decision.upper()}", "",
             f"**{_md(str(result.meta.get('candidate')))}** vs **{_md(str(result.meta.get('baseline')))}**, judge "
             f"`{_md(str(result.meta.get('judge_model')))}`: {g.reason} (metric `{g.metric}`, margin {g.margin:g}).",
             "", "| metric | value | SEM | 95% CI |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in stats_rows(s)]
    lines += ["", f"n = {s.n} scored (wins {s.wins}, ties {s.ties}, losses {s.losses}); failures = {s.failures}; "
              f"{_md(cost_line(result.meta))}.", "", "| judge health | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in health_rows(result.health)]
    if result.meta.get("calibration"):
        lines += ["", _md(calibration_line(result.meta)) + "."]
    if result.meta.get("sequential"):
        lines += ["", _md(sequential_line(result.meta)) + ".", "",
                  "| round | judged | win rate | repeated 95% CI | decision |", "|---|---|---|---|---|"]
        lines += [f"| {' | '.join(_md(c) for c in row)} |" for row in sequential_rows(result.meta)]
    if result.meta.get("per_principle"):
        lines += ["", f"Per-principle verdicts (gate: {_md(str(result.meta['per_principle']['principle_gate']))}; "
                  "Holm-adjusted across principles):", "",
                  "| principle | n | win rate | 95% CI | Holm p (pass) | verdict |", "|---|---|---|---|---|---|"]
        lines += [f"| {' | '.join(_md(c) for c in row)} |" for row in principle_rows(result.meta)]
    for w in result.health.get("warnings", []):
        lines.append(f"\n> ⚠️ {_md(w)}")
    for note in s.notes:
        lines.append(f"\n> note: {_md(note)}")
    return scrub("\n".join(lines) + "\n")


def _md(text: str) -> str:
    """Neutralise Markdown/HTML in names that end up in the summary."""
    import html

    return html.escape(text).replace("|", "\\|")


def render_junit(result: "CompareResult") -> str:
    """JUnit XML: one testsuite with one testcase (the gate); a regression is a <failure>, a broken judge (too
    many failed judgments) an <error>, inconclusive is reported as <skipped> so CI dashboards show it without
    failing the suite on its own."""
    from xml.sax.saxutils import escape, quoteattr

    g = result.gate
    name = f"{g.metric} of {result.meta.get('candidate')} vs {result.meta.get('baseline')} > {g.threshold:.3f}"
    details = escape(json.dumps({k: v for k, v in clean_summary(result).items() if k not in ("constitution",)},
                                default=str, indent=1))
    failures = 1 if g.decision == "fail" else 0
    errors = 1 if g.decision == "error" else 0
    skipped = 1 if g.decision == "inconclusive" else 0
    body = ""
    if g.decision == "fail":
        body = f"<failure message={quoteattr(g.reason)} type=\"regression\">{details}</failure>"
    elif g.decision == "error":
        body = f"<error message={quoteattr(g.reason)} type=\"infrastructure\">{details}</error>"
    elif g.decision == "inconclusive":
        body = f"<skipped message={quoteattr('inconclusive: ' + g.reason)}/>"
    props = _junit_properties(result.meta)
    return scrub("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 f"<testsuites><testsuite name=\"sami-kit eval compare\" tests=\"1\" failures=\"{failures}\" "
                 f"errors=\"{errors}\" skipped=\"{skipped}\">\n"
                 f"<testcase classname=\"sami_kit.gate\" name={quoteattr(name)}>{props}{body}"
                 f"<system-out>{details}</system-out></testcase>\n"
                 f"</testsuite></testsuites>\n")


def _junit_properties(meta: dict[str, Any]) -> str:
    """``<properties>`` of the testcase: the sequential gate's rounds and calls saved, the calibration numbers and
    the per-principle verdicts, for dashboards that read properties rather than the system-out JSON."""
    from xml.sax.saxutils import quoteattr

    props: list[tuple[str, Any]] = []
    seq = meta.get("sequential")
    if seq:
        props += [("sequential.stopped_round", seq["stopped_round"]), ("sequential.rounds", seq["rounds"]),
                  ("sequential.judge_calls", seq["judge_calls"]),
                  ("sequential.judge_calls_saved", seq["judge_calls_saved"])]
        for look in seq.get("looks", []):
            props.append((f"sequential.round{look['round']}",
                          f"{look['decision']} n={look['n_judged']} ci={_ci(look.get('ci_low'), look.get('ci_high'))}"))
    cal = meta.get("calibration")
    if cal:
        props += [(f"calibration.{k}", cal[k]) for k in ("accuracy", "kappa", "position_consistency", "passed")]
    for row in (meta.get("per_principle") or {}).get("rows", []):
        props.append((f"principle.{row['principle']}", f"{row['verdict']} win_rate={_pct(row.get('win_rate'))}"))
    if not props:
        return ""
    return "<properties>" + "".join(f"<property name={quoteattr(str(k))} value={quoteattr(str(v))}/>"
                                    for k, v in props) + "</properties>"


def render_html(result: "CompareResult") -> str:
    """A self-contained page: gate, statistics, judge health and every judged pair (all model text escaped, every
    secret masked before escaping)."""
    g = result.gate
    meta: dict[str, Any] = scrub_data(result.meta)  # type: ignore[assignment]
    records: list[dict[str, Any]] = scrub_data(result.records)  # type: ignore[assignment]
    css = "gate error fail" if g.decision == "error" else f"gate {g.decision}"
    parts = [f"<h1>SAMI comparison: {esc(meta.get('candidate'))} vs {esc(meta.get('baseline'))}</h1>",
             f"<p class='{esc(css)}'>Gate <b>{esc(g.decision.upper())}</b> on {esc(g.metric)}: "
             f"{esc(g.reason)}</p>",
             f"<p>Judge: {esc(meta.get('judge_model'))}. Lengths in {esc(meta.get('length_unit'))}. "
             f"{esc(cost_line(meta))}.</p>",
             "<h2>Statistics</h2>", table_html(["metric", "value", "SEM", "95% CI"], stats_rows(result.stats)),
             "<h2>Judge health</h2>", table_html(["check", "value"], health_rows(result.health))]
    if meta.get("calibration"):
        parts.append(f"<p>{esc(calibration_line(meta))}</p>")
    if meta.get("sequential"):
        parts += ["<h2>Sequential gate</h2>", f"<p>{esc(sequential_line(meta))}</p>",
                  table_html(["round", "judged", "win rate", "repeated 95% CI", "decision"], sequential_rows(meta))]
    if meta.get("per_principle"):
        parts += ["<h2>Per-principle verdicts</h2>",
                  table_html(["principle", "n", "win rate", "95% CI", "Holm p (pass)", "verdict"], principle_rows(meta))]
    for w in result.health.get("warnings", []):
        parts.append(f"<p class='warn'>warning: {esc(w)}</p>")
    for note in result.stats.notes:
        parts.append(f"<p class='note'>note: {esc(scrub(note))}</p>")
    parts.append(f"<h2>Constitution</h2><pre>{esc(meta.get('constitution', ''))}</pre>")
    parts.append("<h2>Judged pairs</h2>")
    label = {1.0: "candidate wins", 0.0: "baseline wins", 0.5: "tie", None: "FAILED"}
    for r in records:
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
    return scrub(html_page("SAMI comparison", "\n".join(parts)))
