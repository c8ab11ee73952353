"""The ``mlflow`` tracker: an MLflow run on a tracking server (``tracking_uri: http://...``,
``MLFLOW_TRACKING_URI``) or, by default, the file store ``mlruns/`` in the run directory (``mlflow ui
--backend-store-uri RUN_DIR/mlruns``).

It uses ``MlflowClient`` with an explicit run id, never MLflow's "active run" (thread and process state). The config
is logged as dotted parameters (``train.lr``) and as ``config.json``; tables go to MLflow's table artifacts
(``tables/<name>.json``, one row per logged row, with its step). A ``--resume`` reopens the recorded run id, or
finds the run by its ``sami_kit.uid`` tag. MLflow 3 keeps the file store in maintenance mode behind
``MLFLOW_ALLOW_FILE_STORE``: this tracker sets it (for this process only) when the store it logs to is a local
directory, which only the lightweight ``mlflow-skinny`` client needs (no database server).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import Field

from sami_toolkit.builtin.tracker_common import TrackerOptions, cell, columns, flat_params, run_name, run_tags
from sami_toolkit.core.components import Tracker, TrackerStatus
from sami_toolkit.core.records import TrackedRun

UID_TAG = "sami_kit.uid"
STATUS = {"success": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
#: MLflow's limits: parameters per request, and characters of one parameter value
PARAM_BATCH, PARAM_CHARS, METRIC_BATCH = 100, 6000, 1000


def _is_file_store(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri


class MlflowTracker(Tracker):
    """MLflow (a tracking server, or a local file store); install the `mlflow` extra."""

    name = "mlflow"
    requires = ("mlflow",)
    install = "pip install 'sami-kit[mlflow]'"

    class Options(TrackerOptions):
        tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                                           "else the file store mlruns/ in the run directory).")

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._client: Any = None
        self._run_id: str = ""

    def start(self, run: TrackedRun, config: Mapping[str, Any]) -> str:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        o = self.options
        uri = o.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or (Path(run.directory) / "mlruns").as_uri()
        if _is_file_store(uri):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        client = self._client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(o.project)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(o.project)
        run_id = run.resume_id or (self._find(experiment_id, run.uid) if run.resumed else None)
        if run_id is not None:
            client.update_run(run_id, status="RUNNING")
            self._run_id = run_id
            return run_id
        tags = {UID_TAG: run.uid, "sami_kit.job": run.job, **{f"tag.{t}": "true" for t in run_tags(o, run)}}
        self._run_id = client.create_run(experiment_id, run_name=run_name(o, run), tags=tags).info.run_id
        params = [Param(k, v[:PARAM_CHARS]) for k, v in flat_params(config)]
        for start in range(0, len(params), PARAM_BATCH):
            client.log_batch(self._run_id, params=params[start:start + PARAM_BATCH])
        client.log_dict(self._run_id, dict(config), "config.json")
        return self._run_id

    def _find(self, experiment_id: str, uid: str) -> str | None:
        found = self._client.search_runs([experiment_id], filter_string=f"tags.`{UID_TAG}` = '{uid}'", max_results=1)
        return found[0].info.run_id if found else None

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        for start in range(0, len(batch), METRIC_BATCH):
            self._client.log_batch(self._run_id, metrics=batch[start:start + METRIC_BATCH])

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]], *, step: int) -> None:
        cols = ["step", *(c for c in columns(rows) if c != "step")]
        data = {c: [step if c == "step" else cell(r.get(c)) for r in rows] for c in cols}
        self._client.log_table(self._run_id, data=data, artifact_file=f"tables/{name.replace('/', '_')}.json")

    def log_artifact(self, path: Path, *, name: str | None = None) -> None:
        self._client.log_artifact(self._run_id, str(path))

    def finish(self, status: TrackerStatus) -> None:
        self._client.set_terminated(self._run_id, status=STATUS[status])
