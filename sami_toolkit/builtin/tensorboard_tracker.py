"""The ``tensorboard`` tracker: event files written with ``torch.utils.tensorboard``, shown by
``tensorboard --logdir RUN_DIR/tensorboard``.

Scalars are the series; tables and text artifacts (the config, principles, summary.md) go to the text plugin as
Markdown; every artifact is also copied under ``<log_dir>/artifacts/``, since TensorBoard has no artifact store.
The run id is the log directory, so a ``--resume``d run appends to the same event stream.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import Field

from sami_toolkit.builtin.tracker_common import TrackerOptions, markdown_table, run_tags
from sami_toolkit.core.components import Tracker, TrackerStatus
from sami_toolkit.core.records import TrackedRun

#: text artifacts up to this size are also shown in the text plugin
TEXT_LIMIT = 256 * 1024
TEXT_SUFFIXES = {".md": "markdown", ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".txt": ""}


class TensorBoardTracker(Tracker):
    """TensorBoard event files (torch.utils.tensorboard); install the `tensorboard` extra."""

    name = "tensorboard"
    requires = ("tensorboard",)
    install = "pip install 'sami-kit[tensorboard]'"

    class Options(TrackerOptions):
        log_dir: str | None = Field(None, description="Directory of the event files (default: `tensorboard/` in "
                                                      "the run directory, or in eval compare's output dir).")
        flush_secs: int = Field(10, ge=1, description="Seconds between writes of the event file to disk.")

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._writer: Any = None
        self._log_dir: Path | None = None

    def start(self, run: TrackedRun, config: Mapping[str, Any]) -> str:
        from torch.utils.tensorboard import SummaryWriter

        import yaml

        log_dir = Path(run.resume_id or self.options.log_dir or Path(run.directory) / "tensorboard")
        self._log_dir = log_dir
        self._writer = SummaryWriter(log_dir=str(log_dir), flush_secs=self.options.flush_secs)
        if run.resume_id is None and not run.resumed:
            self._writer.add_text("config", "```yaml\n" + yaml.safe_dump(dict(config), sort_keys=False) + "```", 0)
            self._writer.add_text("tags", ", ".join(run_tags(self.options, run)), 0)
        return str(log_dir)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)
        self._writer.flush()  # on the tracker's own thread: costs the run nothing, and a kill loses nothing sent

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]], *, step: int) -> None:
        self._writer.add_text(name, markdown_table(rows), step)
        self._writer.flush()

    def log_artifact(self, path: Path, *, name: str | None = None) -> None:
        assert self._log_dir is not None
        target = self._log_dir / "artifacts" / (name or path.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        kind = TEXT_SUFFIXES.get(path.suffix)
        if kind is not None and path.stat().st_size <= TEXT_LIMIT:
            text = path.read_text(encoding="utf-8", errors="replace")
            self._writer.add_text(f"artifacts/{target.name}", text if kind == "markdown" else
                                  f"```{kind}\n{text}\n```", 0)

    def finish(self, status: TrackerStatus) -> None:
        self._writer.close()
