"""What ``sami-kit eval history`` shows and writes: the checkpoint table, the flagged steps, the Bradley–Terry
ranking (console and Markdown), and an SVG line chart per metric with its CI over the checkpoints (drawn with
:func:`~sami_toolkit.report.html.svg_line_chart`, no plotting library)."""

from __future__ import annotations

from typing import Any, Sequence

from sami_toolkit.report.html import esc, svg_line_chart


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f}%"


def _ci(lo: Any, hi: Any) -> str:
    return "n/a" if lo is None or hi is None else f"[{100 * float(lo):.1f}, {100 * float(hi):.1f}]"


def history_rows(checkpoints: Sequence[Any], steps: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[list[str]]:
    """One row per checkpoint: index, label, baseline, n, gate, then per metric ``value [CI]`` with ▲/▼ where the
    step from the previous checkpoint is significant."""
    flags = {(s["to"], s["baseline"], s["metric"]): ("▲" if s["direction"] == "up" else "▼")
             for s in steps if s["significant"]}
    rows = []
    for i, c in enumerate(checkpoints, start=1):
        cells = [str(i), c.label, c.baseline, str(c.n), c.decision or "-"]
        for m in metrics:
            v, lo, hi = c.metrics.get(m, (None, None, None))
            flag = flags.get((c.label, c.baseline, m), "")
            cells.append(f"{_pct(v)} {_ci(lo, hi)}{(' ' + flag) if flag else ''}")
        rows.append(cells)
    return rows


def history_headers(metrics: Sequence[str]) -> list[str]:
    return ["#", "checkpoint", "baseline", "n", "gate", *metrics]


def shown_metrics(checkpoints: Sequence[Any]) -> list[str]:
    from sami_toolkit.evaluation.history import HISTORY_METRICS

    return [m for m in HISTORY_METRICS if any(m in c.metrics for c in checkpoints)]


def history_svg(checkpoints: Sequence[Any], steps: Sequence[dict[str, Any]], metrics: Sequence[str]) -> str:
    """One SVG document: a line chart per metric (x = checkpoint number, one series per baseline, error bars =
    half the CI width), stacked; each chart's title names the checkpoints with a significant step."""
    charts = []
    for m in metrics:
        series = []
        for baseline in dict.fromkeys(c.baseline for c in checkpoints):
            xs, ys, errs = [], [], []
            for i, c in enumerate(checkpoints, start=1):
                if c.baseline != baseline or m not in c.metrics:
                    continue
                v, lo, hi = c.metrics[m]
                xs.append(i)
                ys.append(v)
                errs.append(None if lo is None or hi is None else (float(hi) - float(lo)) / 2)
            if xs:
                series.append({"label": f"vs {baseline}", "x": xs, "y": ys, "err": errs})
        flagged = [str(i) for i, c in enumerate(checkpoints, start=1)
                   if any(s["significant"] and s["to"] == c.label and s["metric"] == m for s in steps)]
        title = m + (f" (significant step at #{', #'.join(flagged)})" if flagged else "")
        charts.append(svg_line_chart(title, series, ylabel=m, xlabel="checkpoint #", reference=0.5,
                                     reference_label="50%", percent=True, width=560, height=280))
    height = 280 * max(len(charts), 1)
    body = "".join(f"<g transform='translate(0,{280 * i})'>{chart}</g>" for i, chart in enumerate(charts))
    legend = "".join(f"<!-- #{i}: {esc(c.label)} vs {esc(c.baseline)} -->" for i, c in enumerate(checkpoints, start=1))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='560' height='{height}' role='img' "
            f"aria-label='checkpoint history'>{legend}{body}</svg>\n")


def ranking_rows(ranking: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [[str(r["rank"]), r["name"], f"{r['log_strength']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]",
             f"{r['rank_low']}-{r['rank_high']}", _pct(r["win_rate_vs_baseline"]), str(r["n"])] for r in ranking]


RANKING_HEADERS = ["rank", "candidate", "BT log-strength vs baseline [95% CI]", "rank 95% interval",
                   "win rate", "n"]


def _md(text: str) -> str:
    import html

    return html.escape(str(text)).replace("|", "\\|")


def history_markdown(checkpoints: Sequence[Any], steps: Sequence[dict[str, Any]],
                     ranks: dict[str, list[dict[str, Any]]]) -> str:
    metrics = shown_metrics(checkpoints)
    headers = history_headers(metrics)
    lines = ["## Checkpoint history", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in history_rows(checkpoints, steps, metrics)]
    sig = [s for s in steps if s["significant"]]
    lines += ["", "▲/▼: a significant change from the previous checkpoint against the same baseline (5%, two-sided)."]
    for s in sig:
        lines.append(f"- {_md(s['metric'])}: {_md(s['from'])} → {_md(s['to'])} {100 * s['change']:+.1f} points "
                     f"(z = {s['z']:+.2f}, {_md(s['method'])})")
    for baseline, ranking in ranks.items():
        lines += ["", f"### Bradley–Terry ranking against {_md(baseline)}", "",
                  "| " + " | ".join(RANKING_HEADERS) + " |", "|" + "---|" * len(RANKING_HEADERS)]
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in ranking_rows(ranking)]
    return "\n".join(lines) + "\n"
