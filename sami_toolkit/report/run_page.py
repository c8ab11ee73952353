"""``sami-kit report RUN_DIR``: one self-contained HTML page for a run (inline SVG, inline CSS, no JS, no
external assets), with the panels of the paper's Figure 2 (spec §8.6, §9.1):

* mutual information per iteration — the headline constitution-side InfoNCE bound and the paper's estimator
  (spec §1.6), ± SEM;
* mean response length per iteration, ± SEM;
* win rates against the base model and (if present) an instruct model, ± SEM, with the 50% chance line;

followed by judge health, a statistics table and example responses side by side. Every piece of model or
user text is HTML-escaped. The run directory is read defensively: a missing or unreadable piece is skipped with
a note on the page, never a traceback.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em;background:#fff}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f3f3f3}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:.5em;border-radius:4px;margin:.3em 0;
font-size:.85em}
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{border:1px solid #e2e2e2;border-radius:6px;padding:.3em}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:.8em}
.note{color:#777;font-style:italic}.warn{color:#a15c00}
.gate.pass{color:#11772d}.gate.fail{color:#b00020}.gate.inconclusive{color:#a15c00}
details{margin:.4em 0;border:1px solid #eee;border-radius:4px;padding:.3em .6em}
"""

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def esc(value: Any) -> str:
    """HTML-escape anything (None -> empty string), quotes included."""
    return "" if value is None else html.escape(str(value), quote=True)


def html_page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def table_html(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ------------------------------------------------------------------------------------------------ SVG
def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def svg_line_chart(title: str, series: Sequence[dict[str, Any]], *, ylabel: str = "", xlabel: str = "iteration",
                   reference: float | None = None, reference_label: str = "", percent: bool = False,
                   width: int = 380, height: int = 260) -> str:
    """An inline SVG line chart with ±error bars. ``series``: dicts with ``label``, ``x``, ``y``, ``err``
    (lists; ``None`` entries are skipped) and optionally ``dashed``."""
    pts = [(x, y, e) for s in series for x, y, e in zip(s["x"], s["y"], s.get("err") or [None] * len(s["x"]))
           if y is not None]
    if not pts:
        return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='60' role='img'>"
                f"<text x='10' y='30' font-size='13'>{esc(title)}: no data</text></svg>")
    ml, mr, mt, mb = 52, 12, 28, 40
    xs = [p[0] for p in pts]
    lo = min(y - (e or 0) for _, y, e in pts)
    hi = max(y + (e or 0) for _, y, e in pts)
    if reference is not None:
        lo, hi = min(lo, reference), max(hi, reference)
    pad = (hi - lo) * 0.08 or 0.5
    lo, hi = lo - pad, hi + pad
    if percent:  # a rate's axis never leaves [0, 1], even when an error bar would
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    ticks = _nice_ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    if percent:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
        ticks = [t for t in ticks if lo <= t <= hi]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    pw, ph = width - ml - mr, height - mt - mb

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        y = min(max(y, lo), hi)  # error bars are clipped to the plot area
        return mt + (hi - y) / (hi - lo) * ph

    fmt = (lambda v: f"{100 * v:.0f}%") if percent else (lambda v: f"{v:g}")
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
           f"aria-label='{esc(title)}' font-family='sans-serif'>",
           f"<rect x='0' y='0' width='{width}' height='{height}' fill='white'/>",
           f"<text x='{width / 2:.1f}' y='17' text-anchor='middle' font-size='13' font-weight='bold'>{esc(title)}</text>",
           f"<rect x='{ml}' y='{mt}' width='{pw}' height='{ph}' fill='none' stroke='#999'/>"]
    for t in ticks:
        if lo <= t <= hi:
            out.append(f"<line x1='{ml}' x2='{ml + pw}' y1='{sy(t):.1f}' y2='{sy(t):.1f}' stroke='#eee'/>"
                       f"<text x='{ml - 5}' y='{sy(t) + 4:.1f}' text-anchor='end' font-size='10'>{esc(fmt(t))}</text>")
    for x in sorted(set(xs)):
        out.append(f"<text x='{sx(x):.1f}' y='{mt + ph + 14}' text-anchor='middle' font-size='10'>{esc(x)}</text>")
    out.append(f"<text x='{ml + pw / 2:.1f}' y='{height - 6}' text-anchor='middle' font-size='11'>{esc(xlabel)}</text>")
    out.append(f"<text x='12' y='{mt + ph / 2:.1f}' text-anchor='middle' font-size='11' "
               f"transform='rotate(-90 12 {mt + ph / 2:.1f})'>{esc(ylabel)}</text>")
    if reference is not None:
        out.append(f"<line x1='{ml}' x2='{ml + pw}' y1='{sy(reference):.1f}' y2='{sy(reference):.1f}' "
                   f"stroke='#888' stroke-dasharray='4 3'/>")
        if reference_label:
            out.append(f"<text x='{ml + pw - 3}' y='{sy(reference) - 4:.1f}' text-anchor='end' font-size='9' "
                       f"fill='#666'>{esc(reference_label)}</text>")
    for i, s in enumerate(series):
        colour = s.get("color", PALETTE[i % len(PALETTE)])
        dash = " stroke-dasharray='6 4'" if s.get("dashed") else ""
        p = [(x, y, e) for x, y, e in zip(s["x"], s["y"], s.get("err") or [None] * len(s["x"])) if y is not None]
        if len(p) > 1:
            path = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y, _) in enumerate(p))
            out.append(f"<path d='{path}' fill='none' stroke='{colour}' stroke-width='2'{dash}/>")
        for x, y, e in p:
            if e:
                out.append(f"<line x1='{sx(x):.1f}' x2='{sx(x):.1f}' y1='{sy(y - e):.1f}' y2='{sy(y + e):.1f}' "
                           f"stroke='{colour}' stroke-width='1.5'/>"
                           f"<line x1='{sx(x) - 4:.1f}' x2='{sx(x) + 4:.1f}' y1='{sy(y - e):.1f}' y2='{sy(y - e):.1f}' "
                           f"stroke='{colour}'/><line x1='{sx(x) - 4:.1f}' x2='{sx(x) + 4:.1f}' "
                           f"y1='{sy(y + e):.1f}' y2='{sy(y + e):.1f}' stroke='{colour}'/>")
            out.append(f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='3.5' fill='{colour}'/>")
        ly = mt + 12 + 13 * i
        out.append(f"<line x1='{ml + 8}' x2='{ml + 24}' y1='{ly - 4}' y2='{ly - 4}' stroke='{colour}' "
                   f"stroke-width='2'{dash}/><text x='{ml + 28}' y='{ly}' font-size='10'>{esc(s['label'])}</text>")
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------------------------------------ run dir
def _read_json(path: Path, notes: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        notes.append(f"{path.name} not found")
    except (OSError, ValueError) as exc:
        notes.append(f"{path}: unreadable ({type(exc).__name__}: {exc})")
    return None


def _read_jsonl(path: Path, notes: list[str], limit: int | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    notes.append(f"{path}: skipped a line that is not JSON")
                    continue
                if isinstance(row, dict):
                    rows.append(row)
                if limit is not None and len(rows) >= limit:
                    break
    except OSError as exc:
        notes.append(f"{path}: unreadable ({exc})")
    return rows


def iteration_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    root = run_dir / "iterations"
    if not root.is_dir():
        return []
    out = [(int(p.name), p) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(out)


def load_metrics(run_dir: Path, notes: list[str]) -> dict[int, dict[str, Any]]:
    metrics: dict[int, dict[str, Any]] = {}
    for t, path in iteration_dirs(run_dir):
        data = _read_json(path / "metrics.json", [])
        if isinstance(data, dict):
            metrics[t] = data
        else:
            notes.append(f"iteration {t}: no readable metrics.json (skipped)")
    return metrics


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _series(metrics: dict[int, dict[str, Any]], key: str, label: str, **extra: Any) -> dict[str, Any]:
    ts = sorted(metrics)
    return {"label": label, "x": ts, "y": [_num(metrics[t].get(key)) for t in ts],
            "err": [_num(metrics[t].get(f"{key}_sem")) for t in ts], **extra}


def _has(metrics: dict[int, dict[str, Any]], key: str) -> bool:
    return any(_num(m.get(key)) is not None for m in metrics.values())


def _fmt(v: Any, sem: Any = None, pct: bool = False, digits: int = 3) -> str:
    v, sem = _num(v), _num(sem)
    if v is None:
        return "—"
    if pct:
        return f"{100 * v:.1f}" + (f" ± {100 * sem:.1f}" if sem is not None else "")
    return f"{v:.{digits}f}" + (f" ± {sem:.{digits}f}" if sem is not None else "")


STAT_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("mi_infonce_constitutions", "MI InfoNCE (constitution side)", False),
    ("heldout_mi_infonce_constitutions", "held-out MI, fixed base responses", False),
    ("mi_infonce", "MI InfoNCE (two-sided)", False),
    ("mi_paper", "MI paper estimator", False),
    ("mean_length_tokens", "mean length (tokens)", False),
    ("win_rate_vs_base", "WR vs base %", True),
    ("balanced_win_rate_vs_base", "balanced WR vs base %", True),
    ("logistic_win_rate_vs_base", "logistic LC WR vs base %", True),
    ("win_rate_vs_instruct", "WR vs instruct %", True),
    ("balanced_win_rate_vs_instruct", "balanced WR vs instruct %", True),
    ("logistic_win_rate_vs_instruct", "logistic LC WR vs instruct %", True),
)


def _examples(run_dir: Path, iters: list[tuple[int, Path]], notes: list[str], k: int = 3) -> str:
    """Responses to the same prompts across iterations, side by side (from the win-rate judgment files, else
    from samples.jsonl)."""
    per_iter: dict[int, dict[str, dict[str, Any]]] = {}
    for t, path in iters:
        for name in ("win_rate_vs_base.jsonl", "win_rate_vs_instruct.jsonl"):
            f = path / "eval" / name
            if f.is_file():
                per_iter[t] = {str(r.get("id")): r for r in _read_jsonl(f, notes)}
                break
    if per_iter:
        first = per_iter[min(per_iter)]
        ids = list(first)[:k]
        blocks = []
        for qid in ids:
            cols = []
            base_row = next((rows[qid] for rows in per_iter.values() if qid in rows), None)
            if base_row is not None and base_row.get("baseline") is not None:
                cols.append(f"<div><p><b>base model</b></p><pre>{esc(base_row.get('baseline'))}</pre></div>")
            for t in sorted(per_iter):
                row = per_iter[t].get(qid)
                if row is None:
                    continue
                outcome = {1: "wins", 0: "loses", 0.5: "tie", None: "judge failed"}.get(row.get("outcome"), "")
                cols.append(f"<div><p><b>iteration {esc(t)}</b> ({esc(outcome)} vs base)</p>"
                            f"<pre>{esc(row.get('candidate'))}</pre></div>")
            prompt = base_row.get("prompt") if base_row else ""
            blocks.append(f"<details open><summary>prompt {esc(qid)}</summary><pre>{esc(prompt)}</pre>"
                          f"<div class='pair'>{''.join(cols)}</div></details>")
        return "".join(blocks)
    for t, path in reversed(iters):
        f = path / "samples.jsonl"
        if f.is_file():
            rows = _read_jsonl(f, notes, limit=k)
            blocks = []
            for row in rows:
                responses = row.get("responses") or row.get("response") or []
                if isinstance(responses, str):
                    responses = [responses]
                constitutions = row.get("constitutions") or []
                cols = "".join(
                    f"<div><p><b>{esc(constitutions[i] if i < len(constitutions) else f'response {i + 1}')}"
                    f"</b></p><pre>{esc(r if isinstance(r, str) else json.dumps(r))}</pre></div>"
                    for i, r in enumerate(responses))
                blocks.append(f"<details open><summary>iteration {esc(t)} sample {esc(row.get('id', ''))}</summary>"
                              f"<pre>{esc(row.get('query', row.get('prompt', '')))}</pre>"
                              f"<div class='pair'>{cols}</div></details>")
            return "".join(blocks)
    notes.append("no example responses found (iterations/<t>/eval/win_rate_vs_*.jsonl or samples.jsonl)")
    return "<p class='note'>No example responses in this run directory.</p>"


def build_report(run_dir: str | Path) -> str:
    """The report page for ``run_dir`` as a string."""
    run_dir = Path(run_dir)
    notes: list[str] = []
    iters = iteration_dirs(run_dir)
    if not iters:
        notes.append("no iterations/<t>/ directories")
    metrics = load_metrics(run_dir, notes)
    manifest = _read_json(run_dir / "manifest.json", notes) if (run_dir / "manifest.json").exists() else None
    if manifest is None and not (run_dir / "manifest.json").exists():
        notes.append("manifest.json not found")
    name = (manifest or {}).get("name") if isinstance(manifest, dict) else None
    parts = [f"<h1>SAMI run report: {esc(name or run_dir.name)}</h1>",
             f"<p>Run directory: <code>{esc(run_dir)}</code>; {len(metrics)} iteration(s) with metrics "
             "(iteration 0 = base model).</p>"]

    # Figure 2 panels
    charts = []
    mi_series = [s for key, label in (("mi_infonce_constitutions", "InfoNCE, constitution side (headline)"),
                                      ("heldout_mi_infonce_constitutions", "held-out, fixed base responses"),
                                      ("mi_paper", "paper estimator (not a bound)"),
                                      ("mi_infonce", "InfoNCE, two-sided"))
                 if _has(metrics, key) for s in [_series(metrics, key, label)]]
    charts.append(svg_line_chart("Mutual information (± SEM)", mi_series, ylabel="nats"))
    charts.append(svg_line_chart("Mean response length (± SEM)",
                                 [_series(metrics, "mean_length_tokens", "mean length")]
                                 if _has(metrics, "mean_length_tokens") else [], ylabel="tokens"))
    wr = []
    for key, label, dashed in (("win_rate_vs_base", "vs base", False),
                               ("balanced_win_rate_vs_base", "vs base, balanced (length-corrected)", True),
                               ("win_rate_vs_instruct", "vs instruct", False),
                               ("balanced_win_rate_vs_instruct", "vs instruct, balanced", True)):
        if _has(metrics, key):
            wr.append(_series(metrics, key, label, dashed=dashed))
    charts.append(svg_line_chart("Win rate (± SEM)", wr, ylabel="win rate", reference=0.5,
                                 reference_label="chance", percent=True))
    parts.append("<h2>Figure 2 panels</h2><div class='charts'>" +
                 "".join(f"<div class='chart'>{c}</div>" for c in charts) + "</div>")
    parts.append("<p class='note'>The headline MI is the constitution-side InfoNCE bound log C − L_col (a valid "
                 "lower bound on I(Y;C|x), spec §1.6); the paper's estimator is shown for comparison and is not a "
                 "bound.</p>")

    # statistics table
    cols = [(k, label, pct) for k, label, pct in STAT_COLUMNS if _has(metrics, k)]
    if cols:
        rows = [[t, *[_fmt(metrics[t].get(k), metrics[t].get(f"{k}_sem"), pct, 1 if "length" in k else 3)
                      for k, _, pct in cols]]
                for t in sorted(metrics)]
        parts.append("<h2>Statistics</h2>" + table_html(["iteration", *[c[1] for c in cols]], rows))
    else:
        parts.append("<h2>Statistics</h2><p class='note'>No metrics recorded yet.</p>")

    # judge health
    health_rows = []
    for t in sorted(metrics):
        for key, h in metrics[t].items():
            if key.startswith("judge_health_vs_") and isinstance(h, dict):
                health_rows.append([t, key.removeprefix("judge_health_vs_"), _fmt(h.get("failure_rate"), pct=True),
                                    _fmt(h.get("first_position_rate"), pct=True),
                                    _fmt(h.get("position_consistency"), pct=True),
                                    "; ".join(map(str, h.get("warnings", []))) or "—"])
    parts.append("<h2>Judge health</h2>" + (table_html(
        ["iteration", "comparator", "failure rate %", "slot-A win rate %", "position consistency %", "warnings"],
        health_rows) if health_rows else "<p class='note'>No judge health recorded.</p>"))

    parts.append("<h2>Example responses</h2>" + _examples(run_dir, iters, notes))

    # provenance
    for fname in ("config.yaml", "principles.yaml"):
        f = run_dir / fname
        if f.is_file():
            try:
                parts.append(f"<h2>{esc(fname)}</h2><pre>{esc(f.read_text(encoding='utf-8'))}</pre>")
            except OSError as exc:
                notes.append(f"{fname}: unreadable ({exc})")
        else:
            notes.append(f"{fname} not found")
    if isinstance(manifest, dict):
        parts.append(f"<h2>manifest.json</h2><pre>{esc(json.dumps(manifest, indent=2, default=str))}</pre>")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li class='note'>{esc(n)}</li>" for n in notes) + "</ul>")
    return html_page(f"SAMI report: {name or run_dir.name}", "\n".join(parts))


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` (or ``out``) and return its path."""
    from sami_toolkit.core.errors import ConfigError

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a run directory (no such directory)")
    path = Path(out) if out else run_dir / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report(run_dir), encoding="utf-8")
    return path
