"""The ``wandb`` tracker: a Weights & Biases run (online, or ``mode: offline`` / ``WANDB_MODE=offline`` for files to
``wandb sync`` later).

The W&B run id is derived from the job's ``uid``, so the run a ``--resume`` reopens is the same one (``resume:
allow``) even if the first process died before its id reached the manifest. wandb's console capture is switched
off: it would wrap the terminal that sami-kit's progress bars draw on. Artifacts are saved as run files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from pydantic import Field

from sami_toolkit.builtin.tracker_common import TrackerOptions, cell, columns, run_name, run_tags
from sami_toolkit.core.components import Tracker, TrackerStatus
from sami_toolkit.core.records import TrackedRun


class WandbTracker(Tracker):
    """Weights & Biases (online or offline); install the `wandb` extra (and `wandb login` to go online)."""

    name = "wandb"
    requires = ("wandb",)
    install = "pip install 'sami-kit[wandb]'"

    class Options(TrackerOptions):
        entity: str | None = Field(None, description="W&B entity (user or team; default: your default entity).")
        mode: Literal["online", "offline", "disabled"] | None = Field(
            None, description="online, offline (files under `dir`, upload later with `wandb sync`) or disabled "
                              "(default: $WANDB_MODE, else online).")
        dir: str | None = Field(None, description="Directory for wandb's local files (default: the run directory).")
        group: str | None = Field(None, description="W&B group of the run.")
        notes: str | None = Field(None, description="W&B notes of the run.")

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._run: Any = None

    def start(self, run: TrackedRun, config: Mapping[str, Any]) -> str:
        import wandb

        o = self.options
        self._run = wandb.init(
            project=o.project, entity=o.entity, name=run_name(o, run), id=run.resume_id or run.uid, resume="allow",
            config=dict(config), tags=run_tags(o, run), dir=str(o.dir or run.directory), mode=o.mode, group=o.group,
            notes=o.notes, job_type=run.job, reinit="create_new",
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))
        return str(self._run.id)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self._run.log(dict(metrics), step=step)

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]], *, step: int) -> None:
        import wandb

        cols = columns(rows)
        self._run.log({name: wandb.Table(columns=cols, data=[[cell(r.get(c)) for c in cols] for r in rows])},
                      step=step)

    def log_artifact(self, path: Path, *, name: str | None = None) -> None:
        self._run.save(str(path), base_path=str(Path(path).parent), policy="now")

    def finish(self, status: TrackerStatus) -> None:
        self._run.finish(exit_code=0 if status == "success" else 1)
