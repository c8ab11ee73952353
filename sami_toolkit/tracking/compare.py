"""What ``sami-kit eval compare`` sends to the trackers of its ``report_to``: one tracker run per comparison.

Everything comes from the summary the gate already produced (:func:`sami_toolkit.report.ci.clean_summary`, so
secrets are masked as in ``summary.json``): every number under ``compare/`` at step 0 (``compare/win_rate``,
``compare/win_rate_ci_low``, ``compare/lc_win_rate``, ``compare/gate/exit_code``,
``compare/judge_health/failure_rate`` ...), the texts — the gate's decision and reason, judge warnings — as the
``compare/notes`` table, and the files the command wrote (summary.json, Markdown, JUnit, HTML, judgments) as
artifacts. A tracker failure never changes the gate's exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from sami_toolkit.tracking.series import flatten
from sami_toolkit.tracking.session import TrackingSession

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.evaluation.compare import CompareResult
    from sami_toolkit.evaluation.config import EvalConfig
    from sami_toolkit.plugins.registry import Registry

NOTES_TABLE = "compare/notes"


def compare_values(summary: dict[str, Any]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The numbers and the notes rows of an ``eval compare`` summary."""
    numbers: dict[str, float] = {}
    notes: list[dict[str, Any]] = []
    for name, value in flatten("compare", summary):
        if isinstance(value, bool):
            numbers[name] = float(value)
        elif isinstance(value, (int, float)):
            numbers[name] = float(value)
        elif isinstance(value, str) and value:
            notes.append({"key": name, "value": value})
    return numbers, notes


def log_compare(config: "EvalConfig", result: "CompareResult", registry: "Registry", *,
                written: Sequence[Path] = (), report: Callable[[str], None] | None = None,
                **options: Any) -> None:
    """Open the configured trackers, send the comparison and close them (a no-op without ``report_to``)."""
    refs = list(getattr(config, "report_to", None) or [])
    if not refs:
        return
    from sami_toolkit.core.config import redact
    from sami_toolkit.report.ci import clean_summary

    directory = Path(config.output.dir) if config.output.dir else Path.cwd()
    name = f"compare-{config.candidate.display}-vs-{config.baseline.display}".replace("/", "_")
    session = TrackingSession.open(refs, registry, name=name, directory=directory,
                                   config=redact(config.model_dump(mode="json")), job="eval-compare",
                                   report=report, tags=("eval-compare",), **options)
    with session:
        numbers, notes = compare_values(clean_summary(result))
        session.log_once("compare:summary", 0, numbers)
        session.log_table("compare:notes", NOTES_TABLE, notes, step=0)
        for path in written:
            session.log_artifact(f"artifact:{path}", path)
