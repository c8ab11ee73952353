"""``sami-kit report RUN_DIR``: one self-contained HTML page for a run (inline SVG, inline CSS, no JS, no
external assets), with the panels of the paper's Figure 2 (spec §8.6, §9.1):

* mutual information per iteration — the headline constitution-side InfoNCE bound and the paper's estimator
  (spec §1.6), ± SEM;
* mean response length per iteration, ± SEM;
* win rates against the base model and (if present) an instruct model, ± SEM, with the 50% chance line;

followed by a statistics table, what each iteration did (training loss per step, kept and dropped queries, MI per
constitution: :mod:`sami_toolkit.report.run_history`), judge health, the held-out responses before and after
training, and example responses side by side. The page is titled with the config's name, as ``summary.md`` is.
Every piece of model or user text is HTML-escaped. The run directory is read defensively: a missing or
unreadable piece is skipped with a note on the page, never a traceback (:mod:`sami_toolkit.report.run_files`).
Metric names and labels come from :mod:`sami_toolkit.core.metrics`, prefixed keys included: an Exp. 3 run's
``id_`` / ``ood_`` and an HH run's ``helpful_`` / ``harmless_`` / ``instruct_`` metrics are series of the same panels
and get a statistics table per prefix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.io import atomic_write_text, read_text
from sami_toolkit.core.metrics import Metric, metric, split_key, variants
from sami_toolkit.report.html import esc, html_page, svg_line_chart, table_html
from sami_toolkit.report.run_files import iteration_dirs, load_metrics, num, read_json, read_rows, run_name
from sami_toolkit.report.run_history import before_after, filtering, mi_per_constitution, training_loss

#: the MI panel's series, headline first
MI_CHART_KEYS: tuple[str, ...] = ("mi_infonce_constitutions", "heldout_mi_infonce_constitutions", "mi_paper",
                                  "mi_infonce")
#: the win-rate panel's series: (key, dashed)
WIN_RATE_CHART: tuple[tuple[str, bool], ...] = (("win_rate_vs_base", False), ("balanced_win_rate_vs_base", True),
                                                ("win_rate_vs_instruct", False),
                                                ("balanced_win_rate_vs_instruct", True))
#: the statistics table's columns (a column shows when any iteration has it)
STAT_KEYS: tuple[str, ...] = (
    "mi_infonce_constitutions", "heldout_mi_infonce_constitutions", "mi_infonce", "mi_paper", "mean_length_tokens",
    "win_rate_vs_base", "balanced_win_rate_vs_base", "logistic_win_rate_vs_base",
    "win_rate_vs_instruct", "balanced_win_rate_vs_instruct", "logistic_win_rate_vs_instruct",
)


def _series(metrics: dict[int, dict[str, Any]], key: str, **extra: Any) -> dict[str, Any]:
    """One chart series of ``key`` over the iterations, labelled from the vocabulary, with its SEM as error bar."""
    ts = sorted(metrics)
    return {"label": metric(key).label, "x": ts, "y": [num(metrics[t].get(key)) for t in ts],
            "err": [num(metrics[t].get(f"{key}_sem")) for t in ts], **extra}


def _has(metrics: dict[int, dict[str, Any]], key: str) -> bool:
    return any(num(m.get(key)) is not None for m in metrics.values())


def _shown(metrics: dict[int, dict[str, Any]], base_keys: Any) -> list[Metric]:
    """The metrics of ``base_keys`` with a number in some iteration, each followed by its prefixed versions."""
    present = {key for m in metrics.values() for key, value in m.items() if num(value) is not None}
    return variants(base_keys, present)


def _base_key(key: str) -> str:
    """The vocabulary key behind ``key``'s prefixes (``id_balanced_win_rate_vs_base`` -> ``balanced_...``)."""
    found = split_key(key)
    return found[1].key if found else key


def _prefix_label(key: str) -> str:
    """The words of ``key``'s prefixes ("ID", "helpful instruct baseline"), ``""`` for an unprefixed key."""
    found = split_key(key)
    return " ".join(p.label for p in found[0]) if found else ""


def _fmt(v: Any, sem: Any = None, pct: bool = False, digits: int = 3) -> str:
    v, sem = num(v), num(sem)
    if v is None:
        return "—"
    if pct:
        return f"{100 * v:.1f}" + (f" ± {100 * sem:.1f}" if sem is not None else "")
    return f"{v:.{digits}f}" + (f" ± {sem:.{digits}f}" if sem is not None else "")


# ------------------------------------------------------------------------------------------------ examples
def _judged_examples(per_iter: dict[int, dict[str, Any]], k: int) -> str:
    """The first ``k`` judged prompts: the base model's response, then each iteration's with its verdict."""
    blocks = []
    for qid in list(per_iter[min(per_iter)])[:k]:
        cols = []
        base_row = next((rows[qid] for rows in per_iter.values() if qid in rows), None)
        if base_row is not None and base_row.baseline is not None:
            cols.append(f"<div><p><b>base model</b></p><pre>{esc(base_row.baseline)}</pre></div>")
        for t in sorted(per_iter):
            row = per_iter[t].get(qid)
            if row is None:
                continue
            outcome = {1: "wins", 0: "loses", 0.5: "tie", None: "judge failed"}.get(row.outcome, "")
            cols.append(f"<div><p><b>iteration {esc(t)}</b> ({esc(outcome)} vs base)</p>"
                        f"<pre>{esc(row.candidate)}</pre></div>")
        prompt = base_row.prompt if base_row else ""
        blocks.append(f"<details open><summary>prompt {esc(qid)}</summary><pre>{esc(prompt)}</pre>"
                      f"<div class='pair'>{''.join(cols)}</div></details>")
    return "".join(blocks)


def _sample_examples(t: int, path: Path, notes: list[str], k: int) -> str:
    """The first ``k`` queries of iteration ``t``'s samples: one column per constitution with its raw response;
    the query text comes from the iteration's pairs.jsonl when the query was kept."""
    from sami_toolkit.core.records import PairRow, SampleRow

    by_query: dict[str, list[Any]] = {}
    for row in read_rows(path / "samples.jsonl", SampleRow, notes):
        if row.query_id in by_query or len(by_query) < k:
            by_query.setdefault(row.query_id, []).append(row)
    queries = {}
    if (path / "pairs.jsonl").is_file():
        queries = {pair.query_id: pair.query for pair in read_rows(path / "pairs.jsonl", PairRow, notes)}
    blocks = []
    for qid, rows in by_query.items():
        cols = "".join(f"<div><p><b>{esc(row.label)}</b></p><pre>{esc(row.raw)}</pre></div>"
                       for row in sorted(rows, key=lambda r: r.index))
        blocks.append(f"<details open><summary>iteration {esc(t)} query {esc(qid)}</summary>"
                      f"<pre>{esc(queries.get(qid, ''))}</pre><div class='pair'>{cols}</div></details>")
    return "".join(blocks)


def _examples(run_dir: Path, iters: list[tuple[int, Path]], notes: list[str], k: int = 3) -> str:
    """Responses to the same prompts across iterations, side by side (from the win-rate judgment files, else
    from the latest samples.jsonl)."""
    from sami_toolkit.core.records import JudgmentRow

    per_iter: dict[int, dict[str, Any]] = {}
    for t, path in iters:
        prefixed = sorted(f.name for f in (path / "eval").glob("*_win_rate_vs_*.jsonl")) \
            if (path / "eval").is_dir() else []  # Exp. 3's id_..., HH's helpful_...: the first one found
        for name in ("win_rate_vs_base.jsonl", "win_rate_vs_instruct.jsonl", *prefixed):
            f = path / "eval" / name
            if f.is_file():
                per_iter[t] = {row.id: row for row in read_rows(f, JudgmentRow, notes)}
                break
    if per_iter:
        return _judged_examples(per_iter, k)
    for t, path in reversed(iters):
        if (path / "samples.jsonl").is_file():
            return _sample_examples(t, path, notes, k)
    notes.append("no example responses found (iterations/<t>/eval/win_rate_vs_*.jsonl or samples.jsonl)")
    return "<p class='note'>No example responses in this run directory.</p>"


# ------------------------------------------------------------------------------------------------ sections
def _charts(metrics: dict[int, dict[str, Any]]) -> str:
    """The three Figure 2 panels (spec §8.6) and the note on which MI is a bound."""
    mi = [_series(metrics, m.key) for m in _shown(metrics, MI_CHART_KEYS)]
    length = [_series(metrics, m.key) for m in _shown(metrics, ("mean_length_tokens",))]
    dashed = {key for key, d in WIN_RATE_CHART if d}  # balanced rates dashed, behind any prefix too
    wr = [_series(metrics, m.key, dashed=_base_key(m.key) in dashed)
          for m in _shown(metrics, [key for key, _ in WIN_RATE_CHART])]
    charts = [svg_line_chart("Mutual information (± SEM)", mi, ylabel="nats"),
              svg_line_chart("Mean response length (± SEM)", length, ylabel="tokens"),
              svg_line_chart("Win rate (± SEM)", wr, ylabel="win rate", reference=0.5, reference_label="chance",
                             percent=True)]
    return ("<h2>Figure 2 panels</h2><div class='charts'>" +
            "".join(f"<div class='chart'>{c}</div>" for c in charts) + "</div>"
            "<p class='note'>The headline MI is the constitution-side InfoNCE bound log C − L_col (a valid "
            "lower bound on I(Y;C|x), spec §1.6); the paper's estimator is shown for comparison and is not a "
            "bound.</p>")


def _statistics(metrics: dict[int, dict[str, Any]]) -> str:
    """Every iteration's value ± SEM of each vocabulary metric the run has: one table for the unprefixed keys and
    one per prefix group (Exp. 3's ID and OOD, HH's helpful and harmless), so a table stays readable."""
    groups: dict[str, list[Metric]] = {}
    for m in _shown(metrics, STAT_KEYS):
        groups.setdefault(_prefix_label(m.key), []).append(m)
    if not groups:
        return "<h2>Statistics</h2><p class='note'>No metrics recorded yet.</p>"
    parts = ["<h2>Statistics</h2>"]
    for label, cols in sorted(groups.items(), key=lambda kv: kv[0] != ""):  # unprefixed first, then as found
        rows = [[t, *[_fmt(metrics[t].get(m.key), metrics[t].get(f"{m.key}_sem"), m.is_rate,
                           1 if m.unit == "tokens" else 3) for m in cols]]
                for t in sorted(metrics)]
        if label:
            parts.append(f"<h3>{esc(label)}</h3>")
        parts.append(table_html(["iteration", *[m.heading for m in cols]], rows))
    return "".join(parts)


def _judge_health(metrics: dict[int, dict[str, Any]]) -> str:
    rows = []
    for t in sorted(metrics):
        for key, h in metrics[t].items():
            found = split_key(key)
            if found is not None and found[1].key.startswith("judge_health_vs_") and isinstance(h, dict):
                comparator = " ".join([*(p.label for p in found[0]), found[1].key.removeprefix("judge_health_vs_")])
                rows.append([t, comparator, _fmt(h.get("failure_rate"), pct=True),
                             _fmt(h.get("first_position_rate"), pct=True), _fmt(h.get("position_consistency"), pct=True),
                             "; ".join(map(str, h.get("warnings", []))) or "—"])
    if not rows:
        return "<h2>Judge health</h2><p class='note'>No judge health recorded.</p>"
    return "<h2>Judge health</h2>" + table_html(
        ["iteration", "comparator", "failure rate %", "slot-A win rate %", "position consistency %", "warnings"], rows)


def _provenance(run_dir: Path, manifest: Any, notes: list[str]) -> str:
    """The run's config, principle set and manifest, as the run directory holds them."""
    parts = []
    for fname in ("config.yaml", "principles.yaml"):
        f = run_dir / fname
        if not f.is_file():
            notes.append(f"{fname} not found")
            continue
        try:
            parts.append(f"<h2>{esc(fname)}</h2><pre>{esc(read_text(f))}</pre>")
        except ConfigError as exc:
            notes.append(f"{fname}: unreadable ({exc.message})")
    if isinstance(manifest, dict):
        parts.append(f"<h2>manifest.json</h2><pre>{esc(json.dumps(manifest, indent=2, default=str))}</pre>")
    return "".join(parts)


def build_report(run_dir: str | Path) -> str:
    """The report page for ``run_dir`` as a string."""
    run_dir = Path(run_dir)
    notes: list[str] = []
    iters = iteration_dirs(run_dir)
    if not iters:
        notes.append("no iterations/<t>/ directories")
    metrics = load_metrics(run_dir, notes)
    manifest = read_json(run_dir / "manifest.json", notes)
    name = run_name(run_dir, manifest)
    parts = [f"<h1>SAMI run report: {esc(name)}</h1>",
             f"<p>Run directory: <code>{esc(run_dir)}</code>; {len(metrics)} iteration(s) with metrics "
             "(iteration 0 = base model).</p>",
             _charts(metrics), _statistics(metrics), training_loss(iters, notes), filtering(iters, notes),
             mi_per_constitution(iters, metrics, notes), _judge_health(metrics),
             before_after(iters, metrics, notes),
             "<h2>Example responses</h2>" + _examples(run_dir, iters, notes),
             _provenance(run_dir, manifest, notes)]
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li class='note'>{esc(n)}</li>" for n in notes) + "</ul>")
    return html_page(f"SAMI report: {name}", "\n".join(p for p in parts if p))


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` (or ``out``) atomically and return its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a run directory (no such directory)")
    return atomic_write_text(Path(out) if out else run_dir / "report.html", build_report(run_dir))
