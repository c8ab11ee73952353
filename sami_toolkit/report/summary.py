"""The run's per-iteration summary: the console table printed after each iteration and ``summary.md``.

Column titles and the footnote that explains them come from the metric vocabulary
(:mod:`sami_toolkit.core.metrics`), so the table says what the HTML report and ``eval mi`` say; the footnote
explains only the columns the table shows.  The title names the run by its config's ``name``, as the HTML
report does.  A run whose evaluators write prefixed keys (Exp. 3's ``id_`` / ``ood_``, HH's ``helpful_`` /
``harmless_``) gets the headline columns behind each prefix (:data:`~sami_toolkit.core.metrics.PREFIXED_SUMMARY_KEYS`):
"ID MI col", "OOD win vs base".
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from sami_toolkit.core.io import atomic_write_text, read_json
from sami_toolkit.core.metrics import PREFIXED_SUMMARY_KEYS, SUMMARY_KEYS, metric, split_key, variants

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.run.config import RunConfig
    from sami_toolkit.core.run_dir import RunDir


def _read_json(path: Path) -> dict:
    return read_json(path, {})


#: (column title, metric key) shown per iteration; missing keys are left blank
SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = tuple((metric(key).short_label, key) for key in SUMMARY_KEYS)


def _fmt(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return ""
    sem = metrics.get(f"{key}_sem")
    if isinstance(value, float):
        return f"{value:.2f}±{sem:.2f}" if isinstance(sem, (int, float)) else f"{value:.2f}"
    return str(value)


def _columns(all_metrics: list[dict]) -> list[tuple[str, str]]:
    """The metric columns that have a value in at least one iteration (a run without a judge shows no win rate),
    each followed by its prefixed headline versions (``ID MI col``, ``OOD MI col``)."""
    present = {key for m in all_metrics for key in m}
    return [(m.short_label, m.key) for m in variants(SUMMARY_KEYS, present, prefixed_keys=PREFIXED_SUMMARY_KEYS)]


def summary_rows(run: "RunDir", config: "RunConfig", upto: int | None = None) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)``: one row per iteration that has metrics or a filter record."""
    _, headers, rows = _summary(run, config, upto)
    return headers, rows


def _summary(run: "RunDir", config: "RunConfig",
             upto: int | None = None) -> tuple[list[tuple[str, str]], list[str], list[list[str]]]:
    """``(metric columns, headers, rows)`` of :func:`summary_rows`."""
    last = config.iterations if upto is None else upto
    all_metrics = [_read_json(run.metrics_path(t)) for t in range(0, last + 1)]  # each file read once
    columns = _columns(all_metrics)
    rows = []
    for t, metrics in enumerate(all_metrics):
        filt = _read_json(run.iteration_dir(t) / "filter.json")
        if not metrics and not filt:
            continue
        kept = "" if t == 0 else f"{filt.get('kept', '')}/{filt.get('queries', '')}"
        reasons = ", ".join(f"{k} {v}" for k, v in (filt.get("dropped_by_reason") or {}).items())
        rows.append([str(t), str(config.steps_for(t) if t else 0), kept, reasons or "-",
                     *(_fmt(metrics, key) for _, key in columns)])
    return columns, ["t", "steps", "kept", "dropped", *(title for title, _ in columns)], rows


def summary_table(run: "RunDir", config: "RunConfig", upto: int | None = None) -> Any:
    from rich.table import Table

    headers, rows = summary_rows(run, config, upto)
    table = Table(title=f"SAMI run {config.name}", title_justify="left")
    for title in headers:
        table.add_column(title, justify="left" if title == "dropped" else "right", no_wrap=title != "dropped",
                         min_width=len(title))
    for row in rows:
        table.add_row(*row)
    return table


def footnote(columns: Sequence[tuple[str, str]] | None = None) -> str:
    """What each metric column of the summary means, from the vocabulary's descriptions: of ``columns`` (the
    ones a table shows, so a run without a judge or without ``mi-heldout`` is not told about columns it does
    not have), or of every column the summary can show."""
    shown = SUMMARY_COLUMNS if columns is None else columns
    parts: dict[str, str] = {}  # a prefixed column is told as its base column and its prefix, each once
    for title, key in shown:
        found = split_key(key)
        if found is None or not found[0]:
            parts.setdefault(title, f"{title} = {metric(key).description}")
            continue
        prefixes, base = found
        parts.setdefault(base.short_label, f"{base.short_label} = {base.description}")
        for p in prefixes:
            parts.setdefault(f"{p.short_label} …", f"{p.short_label} … = {p.description}")
    described = "".join(f"; {text}" for text in parts.values())
    return f"kept = pairs kept / queries sampled (spec §2.7); dropped = dropped queries by reason{described}."


def write_summary(run: "RunDir", config: "RunConfig") -> Path:
    """``summary.md``: what was run and the per-iteration metrics, readable without any tool."""
    columns, headers, rows = _summary(run, config)  # the metric columns chosen (no second read of metrics.json)
    # _read_json gives {} for an iteration not trained yet
    precisions = sorted({_read_json(run.iteration_dir(t) / "train.json").get("precision")
                         for t in range(1, config.iterations + 1)} - {None})
    precision = f", precision {'/'.join(precisions)}" if precisions else ""
    lines = [f"# SAMI run `{config.name}`", "",
             f"- base model: `{config.model}`; task `{config.task}`; principles `{config.principles}`",
             f"- constitutions: {config.constitutions.strategy}, C = {config.constitutions.n}; "
             f"trainer `{config.trainer.name}`, lr {config.train.lr:g}, {config.train.optimizer}, "
             f"batch {config.batch_size}, N_b {config.batches_per_iteration}{precision}",
             f"- iterations: {config.iterations}; training always restarts from the base weights (spec §2.1)", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")
    lines += ["", footnote(columns), "Per-iteration files: `iterations/<t>/metrics.json`, `pairs.jsonl`, "
              "`samples.jsonl`, `eval/`."]
    return atomic_write_text(run.root / "summary.md", "\n".join(lines) + "\n")


