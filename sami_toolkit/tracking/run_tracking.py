"""What a SAMI run sends to its trackers, read from the files the loop writes (never computed twice).

The loop makes four calls: :meth:`RunTracking.open` when the run directory exists (the resolved config, secrets
redacted as in ``config.yaml``; ``config.yaml``, ``principles.yaml`` and ``manifest.json`` as artifacts),
:meth:`~RunTracking.step` from the trainer's per-step callback, :meth:`~RunTracking.iteration` once an iteration is
done (its ``filter.json``, ``train.json``, ``metrics.json``, stage durations, the notes and sample tables) and
:meth:`~RunTracking.finish` at the end (``summary.md``, ``report.html``, the final manifest). Because every value is
read back from the run directory, the tracker shows exactly what ``metrics.json`` and ``train.json`` hold, and a
resumed run re-reads what an earlier process wrote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from sami_toolkit.core.io import read_json
from sami_toolkit.tracking.series import iteration_series, step_series
from sami_toolkit.tracking.session import ManifestState, StepAxis, TrackingSession
from sami_toolkit.tracking.tables import NOTES_TABLE, SAMPLES_TABLE, sample_rows

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.core.components import TrackerStatus
    from sami_toolkit.core.run_dir import RunDir
    from sami_toolkit.plugins.registry import Registry

#: the stages whose duration is logged as ``time/<stage>_s`` (seconds recorded in the manifest by the loop)
STAGES = ("sample", "pairs", "train", "eval")
#: how long a failed or interrupted run waits for its trackers to finish sending
INTERRUPTED_CLOSE_SECONDS = 10.0


class RunTracking:
    """The trackers of one SAMI run (a no-op when ``report_to`` is empty or this is not rank 0)."""

    def __init__(self, session: TrackingSession, run: "RunDir") -> None:
        self.session = session
        self.run = run

    @classmethod
    def open(cls, report_to: Sequence[Any], run: "RunDir", config: Any, registry: "Registry", *,
             report: Callable[[str], None] | None = None, **options: Any) -> "RunTracking":
        """Start the trackers of ``report_to`` for the run in ``run`` (``config``: its RunConfig)."""
        from sami_toolkit.core.config import redact

        name = f"{config.name}-{run.root.name}" if config.name and config.name != run.root.name else run.root.name
        session = TrackingSession.open(report_to, registry, name=name, directory=run.root,
                                       config=redact(config.model_dump(mode="json")), job="run",
                                       store=ManifestState(run), axis=StepAxis(config.steps_for), report=report,
                                       **options)
        tracking = cls(session, run)
        for file_name in ("config.yaml", "principles.yaml", "manifest.json"):
            session.log_artifact(f"artifact:start:{file_name}", run.root / file_name)
        return tracking

    @property
    def enabled(self) -> bool:
        return bool(self.session.workers)

    def step(self, t: int, record: dict[str, Any]) -> None:
        """One optimizer step of iteration ``t`` (the trainer's record, as in ``train.json``)."""
        if self.session.workers and "step" in record:
            self.session.log_step(t, int(record["step"]), step_series(record, iteration=t))

    def iteration(self, t: int) -> None:
        """Everything iteration ``t`` wrote, at its last optimizer step (sent once per run)."""
        if not self.session.workers:
            return
        directory = self.run.iteration_dir(t)
        train = read_json(directory / "train.json", {}) or {}
        texts = {"train/precision": train.get("precision")} if train.get("precision") else {}
        numbers, notes = iteration_series(t, read_json(self.run.metrics_path(t), {}) or {},
                                          pairs=read_json(directory / "filter.json", {}) or {},
                                          durations=self._durations(t), texts=texts)
        step = self.session.axis.end(t)
        if t > 0 and train.get("metrics"):  # steps a trainer never reported live (or sent before a kill)
            for record in train["metrics"]:
                self.step(t, record)
        self.session.log_once(f"iteration:{t}", step, numbers)
        self.session.log_table(f"table:notes:{t}", NOTES_TABLE, notes, step=step)
        self.session.log_table(f"table:samples:{t}", SAMPLES_TABLE, sample_rows(directory, t), step=step)

    def _durations(self, t: int) -> dict[str, float]:
        stages = self.run.manifest.get("iterations", {}).get(str(t), {}).get("stages", {})
        return {stage: float(stages[stage]["seconds"]) for stage in STAGES
                if isinstance(stages.get(stage, {}).get("seconds"), (int, float))}

    def finish(self, status: "TrackerStatus" = "success") -> None:
        """The run's summary and report as artifacts (when it wrote them), then close every tracker."""
        if status == "success":
            for file_name in ("summary.md", "report.html", "manifest.json"):
                self.session.log_artifact(f"artifact:end:{file_name}", self.run.root / file_name)
        else:  # a failed or interrupted run should exit promptly, not wait a minute for a tracker
            self.session.close_timeout = min(self.session.close_timeout, INTERRUPTED_CLOSE_SECONDS)
        self.session.finish(status)
