"""What the built-in trackers share: their common options and small conversions (run name, tags, tables, params).

Kept free of any tracker library, so ``sami-kit trackers show NAME`` works without the library installed.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping, Sequence

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions
from sami_toolkit.core.records import TrackedRun

#: tags every tracked job gets, before the configured ones
BASE_TAGS = ("sami", "sami-kit")


class TrackerOptions(ComponentOptions):
    """Options every built-in tracker takes."""

    project: str = Field("sami-kit", description="Project to log to (W&B project, MLflow experiment, Trackio "
                                                 "project; TensorBoard: unused).")
    run_name: str | None = Field(None, description="Name of the tracker run (default: the run's `name` and its "
                                                   "directory's name).")
    tags: list[str] = Field(default_factory=list, description="Tags added to `sami`, `sami-kit` and the job "
                                                              "(`run` or `eval-compare`).")


def run_name(options: TrackerOptions, run: TrackedRun) -> str:
    return options.run_name or run.name


def run_tags(options: TrackerOptions, run: TrackedRun) -> list[str]:
    tags = [*BASE_TAGS, run.job, *run.tags, *options.tags]
    return list(dict.fromkeys(tags))


def columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' keys, in first-seen order."""
    return list(dict.fromkeys(key for row in rows for key in row))


def cell(value: Any) -> Any:
    """A table cell every tracker accepts: numbers and texts as they are, anything else as JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as a Markdown table (TensorBoard's text plugin renders it)."""
    cols = columns(rows)

    def fmt(value: Any) -> str:
        return str(cell(value) if value is not None else "").replace("|", "\\|").replace("\n", "<br>")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in cols) + " |" for row in rows]
    return "\n".join(lines)


def flat_params(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """``("train.lr", "0.001")`` for every leaf of the config (lists as JSON): MLflow-style parameters."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flat_params(value, prefix=f"{name}.")
        else:
            yield name, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
