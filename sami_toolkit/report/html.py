"""HTML building blocks of sami-kit's pages (the run report, the ``eval compare`` page): escaping, the page shell
with its inline CSS, tables, and an inline SVG line chart with error bars.

Everything is self-contained — no JavaScript, no external assets — so a page opens from a CI artifact or an
air-gapped machine as it is.  :func:`esc` is applied to every piece of text that reaches the markup.
"""

from __future__ import annotations

import html
import math
from typing import Any, Callable, Iterable, Sequence

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
    """A complete HTML document: ``body`` (already escaped markup) under the shared inline CSS."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def table_html(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table; every header and cell is escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ------------------------------------------------------------------------------------------------ SVG
def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
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


#: above this many distinct x values the axis gets round ticks instead of one label per value (training steps)
MAX_X_LABELS = 12
#: above this many points a series is drawn as a line without a dot per point
MAX_MARKERS = 60


def _x_ticks(xs: Sequence[float], x0: float, x1: float) -> list[float]:
    """One tick per x value (iterations), or round ticks when there are too many to label (steps)."""
    distinct = sorted(set(xs))
    if len(distinct) <= MAX_X_LABELS:
        return distinct
    return [t for t in _nice_ticks(x0, x1, 8) if x0 <= t <= x1]


def _x_label(x: Any) -> str:
    """``3`` rather than ``3.0`` for a whole number (steps and iterations read back from JSON as floats)."""
    return f"{x:g}" if isinstance(x, float) else str(x)


def svg_line_chart(title: str, series: Sequence[dict[str, Any]], *, ylabel: str = "", xlabel: str = "iteration",
                   reference: float | None = None, reference_label: str = "", percent: bool = False,
                   width: int = 380, height: int = 260) -> str:
    """An inline SVG line chart with ±error bars. ``series``: dicts with ``label``, ``x``, ``y``, ``err``
    (lists; ``None`` entries are skipped) and optionally ``dashed``.  Many x values (a training curve's steps) get
    round ticks, and a series of more than :data:`MAX_MARKERS` points is drawn without a dot per point."""
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
    for x in _x_ticks(xs, x0, x1):
        out.append(f"<text x='{sx(x):.1f}' y='{mt + ph + 14}' text-anchor='middle' font-size='10'>"
                   f"{esc(_x_label(x))}</text>")
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
        ly = mt + 12 + 13 * i
        out.append(_series_svg(s, PALETTE[i % len(PALETTE)], sx, sy, legend=(ml, ly)))
    out.append("</svg>")
    return "".join(out)


def _series_svg(s: dict[str, Any], default_colour: str, sx: Callable[[float], float], sy: Callable[[float], float],
                *, legend: tuple[float, float]) -> str:
    """One series of :func:`svg_line_chart`: its line, error bars (bar and caps), points and legend entry."""
    colour = s.get("color", default_colour)
    dash = " stroke-dasharray='6 4'" if s.get("dashed") else ""
    out = []
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
        if len(p) <= MAX_MARKERS:
            out.append(f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='3.5' fill='{colour}'/>")
    ml, ly = legend
    out.append(f"<line x1='{ml + 8}' x2='{ml + 24}' y1='{ly - 4}' y2='{ly - 4}' stroke='{colour}' "
               f"stroke-width='2'{dash}/><text x='{ml + 28}' y='{ly}' font-size='10'>{esc(s['label'])}</text>")
    return "".join(out)
