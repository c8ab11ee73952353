"""The ``trackio`` tracker: Hugging Face's Trackio, a local SQLite store (``$TRACKIO_DIR``, default
``~/.cache/huggingface/trackio``; ``trackio show`` opens the dashboard) or a Space (``space_id``).

Trackio resumes a run by name, so the name carries the job's ``uid`` (two runs both called ``tiny`` stay apart)
and a ``--resume`` reopens exactly that run. The tracker calls its own ``Run`` object, never Trackio's "current
run" (context state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import Field

from sami_toolkit.builtin.tracker_common import TrackerOptions, cell, columns, run_name
from sami_toolkit.core.components import Tracker, TrackerStatus
from sami_toolkit.core.records import TrackedRun


class TrackioTracker(Tracker):
    """Trackio (local store or a Hugging Face Space); install the `trackio` extra."""

    name = "trackio"
    requires = ("trackio",)
    install = "pip install 'sami-kit[trackio]'"

    class Options(TrackerOptions):
        space_id: str | None = Field(None, description="Log to this Hugging Face Space (user/name) instead of the "
                                                       "local store ($TRACKIO_DIR).")
        group: str | None = Field(None, description="Trackio group of the run.")

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._run: Any = None

    def start(self, run: TrackedRun, config: Mapping[str, Any]) -> str:
        import trackio

        o = self.options
        name = run.resume_id or f"{run_name(o, run)}-{run.uid[:6]}"
        self._run = trackio.init(project=o.project, name=name, group=o.group, space_id=o.space_id,
                                 config={k: cell(v) for k, v in config.items()}, resume="allow", embed=False,
                                 auto_log_gpu=False, auto_log_cpu=False)
        return name

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self._run.log(dict(metrics), step=step)

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]], *, step: int) -> None:
        import trackio

        cols = columns(rows)
        self._run.log({name: trackio.Table(columns=cols, data=[[cell(r.get(c)) for c in cols] for r in rows])},
                      step=step)

    def log_artifact(self, path: Path, *, name: str | None = None) -> None:
        artifact = (name or Path(path).name).replace("/", "-").replace(".", "-")
        self._run.log_artifact(str(path), name=artifact, type="sami-kit")

    def finish(self, status: TrackerStatus) -> None:
        self._run.finish()
