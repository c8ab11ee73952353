"""Reading a run directory for the report: whatever a run left behind, never a traceback.

The report is what a user opens when a run went wrong, so it must show everything that *is* readable: a missing
file, a corrupt ``metrics.json`` or a bad line in a JSONL file becomes a note on the page and the rest is shown.
(The run itself reads the same files strictly, through :mod:`sami_toolkit.core.io` and the row schemas of
:mod:`sami_toolkit.core.records`, because there a bad line must stop the stage.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.io import read_text


def read_json(path: Path, notes: list[str]) -> Any:
    """A JSON file of the run, or None with a note saying why (missing or unreadable is not an error here)."""
    if not path.exists():
        notes.append(f"{path.name} not found")
        return None
    try:
        return json.loads(read_text(path))
    except ConfigError as exc:  # a directory, unreadable, not UTF-8
        notes.append(f"{path}: unreadable ({exc.message})")
    except ValueError as exc:
        notes.append(f"{path}: unreadable ({type(exc).__name__}: {exc})")
    return None


def read_jsonl(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The JSON objects of a run's JSONL file, line by line: a line that is not UTF-8 JSON is skipped and counted
    in one note, the other lines are kept; a torn last line (no newline: a run killed mid-append) is ignored."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        notes.append(f"{path}: unreadable ({type(exc).__name__}: {exc})")
        return []
    *complete, tail = data.split(b"\n")
    rows: list[dict[str, Any]] = []
    bad: list[int] = []
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            bad.append(number)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(number)
    if bad:
        shown = ", ".join(map(str, bad[:5])) + ("…" if len(bad) > 5 else "")
        notes.append(f"{path}: skipped {len(bad)} line(s) that are not JSON objects (line {shown}); "
                     f"{len(rows)} kept")
    if tail.strip():
        try:  # a last line without its newline is still used when it parses (a file written by hand)
            row = json.loads(tail.decode("utf-8"))
            if isinstance(row, dict):
                rows.append(row)
        except (UnicodeDecodeError, ValueError):
            pass
    return rows


def read_rows(path: Path, schema: Any, notes: list[str]) -> list[Any]:
    """The lines of a run's JSONL file as ``schema`` rows (:mod:`sami_toolkit.core.records`); a line that is not
    one is skipped with a note, never an error (the report reads whatever a run left behind)."""
    rows, bad = [], 0
    for line, record in enumerate(read_jsonl(path, notes), start=1):
        try:
            rows.append(schema.from_dict(record, f"{path}:{line}"))
        except ConfigError:
            bad += 1
    if bad:
        notes.append(f"{path}: skipped {bad} line(s) that are not {schema.__name__} records")
    return rows


def iteration_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """``(t, iterations/<t>)`` for every numbered iteration directory, in order."""
    root = run_dir / "iterations"
    if not root.is_dir():
        return []
    out = [(int(p.name), p) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(out)


def load_metrics(run_dir: Path, notes: list[str]) -> dict[int, dict[str, Any]]:
    """Every iteration's ``metrics.json``; an iteration without a readable one is left out with a note."""
    metrics: dict[int, dict[str, Any]] = {}
    for t, path in iteration_dirs(run_dir):
        data = read_json(path / "metrics.json", [])
        if isinstance(data, dict):
            metrics[t] = data
        else:
            notes.append(f"iteration {t}: no readable metrics.json (skipped)")
    return metrics


def run_name(run_dir: Path, manifest: Any) -> str:
    """The run's name as ``summary.md`` shows it: the config's ``name`` (the manifest's or the directory's name
    when config.yaml is missing or unreadable), so the report and the summary call a run the same."""
    import yaml

    try:
        config = yaml.safe_load(read_text(run_dir / "config.yaml"))
    except (ConfigError, OSError, yaml.YAMLError):
        config = None
    for candidate in ((config or {}).get("name") if isinstance(config, dict) else None,
                      manifest.get("name") if isinstance(manifest, dict) else None):
        if isinstance(candidate, str) and candidate.strip():
            return candidate
    return run_dir.name


def num(v: Any) -> float | None:
    """``v`` as a finite float, or None (a JSON ``true``, a string, NaN or ∞ is not a number to plot)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
