"""The built-in trackers, each read back with its own reader (offline modes only: TensorBoard event files, the
MLflow file store, Trackio's local store, W&B offline run files), first and after a resume."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest
from tracker_readers import (mlflow_metrics, mlflow_run, tensorboard_scalar_events, tensorboard_scalars,
                             tensorboard_texts, trackio_logs, trackio_runs, wandb_history, wandb_offline_runs,
                             wandb_run_info)

from sami_toolkit.core.records import TrackedRun
from sami_toolkit.tracking.session import MemoryState, StepAxis, TrackingSession

# Trackio reads $TRACKIO_DIR once, at import: point it at a scratch directory before any test imports it
os.environ.setdefault("TRACKIO_DIR", tempfile.mkdtemp(prefix="sami-kit-trackio-"))

CONFIG = {"name": "tiny", "train": {"lr": 0.001, "loss": "sami"}, "judge": {"options": {"api_key": "***redacted***"}}}
ROWS = [{"iteration": 1, "query_id": "q0", "constitution": "+", "response": "a | b"},
        {"iteration": 1, "query_id": "q0", "constitution": "-", "response": "c"}]


@pytest.fixture(autouse=True)
def _wandb_home(tmp_path, monkeypatch):
    """wandb keeps settings and caches under the home directory: keep them in the test's tmp_path."""
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")


def _drive(tracker, run: TrackedRun, artifact: Path, steps=(1, 2, 3)) -> str:
    run_id = tracker.start(run, CONFIG)
    for step in steps:
        tracker.log_metrics(step, {"train/loss": 1.0 / step, "iteration": 1.0})
    tracker.log_table("samples/heldout", ROWS, step=steps[-1])
    tracker.log_artifact(artifact)
    tracker.finish("success")
    return run_id


@pytest.fixture
def artifact(tmp_path) -> Path:
    path = tmp_path / "summary.md"
    path.write_text("# SAMI run tiny\n", encoding="utf-8")
    return path


def _run(tmp_path, **changes) -> TrackedRun:
    return TrackedRun(**{"name": "tiny", "directory": tmp_path, "uid": "a1b2c3d4e5f6", **changes})


def test_tensorboard_reads_back(tmp_path, artifact, sami_kit_registry):
    tracker = sami_kit_registry.create("trackers", "tensorboard")
    run_id = _drive(tracker, _run(tmp_path), artifact)
    assert run_id == str(tmp_path / "tensorboard")
    again = sami_kit_registry.create("trackers", "tb")
    _drive(again, _run(tmp_path, resumed=True, resume_id=run_id), artifact, steps=(4, 5))
    scalars = tensorboard_scalars(tmp_path / "tensorboard")
    assert scalars["train/loss"] == pytest.approx({s: 1.0 / s for s in (1, 2, 3, 4, 5)})
    assert tensorboard_scalar_events(tmp_path / "tensorboard", "train/loss") == [1, 2, 3, 4, 5]
    texts = tensorboard_texts(tmp_path / "tensorboard")
    assert "| iteration | query_id | constitution | response |" in texts["samples/heldout"][3]
    assert "a \\| b" in texts["samples/heldout"][3]
    assert "lr: 0.001" in texts["config"][0] and "***redacted***" in texts["config"][0]
    assert texts["artifacts/summary.md"][0] == "# SAMI run tiny\n"
    assert (tmp_path / "tensorboard" / "artifacts" / "summary.md").is_file()


def test_mlflow_file_store_reads_back(tmp_path, artifact, sami_kit_registry, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = sami_kit_registry.create("trackers", "mlflow")
    run_id = _drive(tracker, _run(tmp_path), artifact)
    # a resume that never learnt the id (killed before it reached the manifest) finds the run by its uid tag
    _drive(sami_kit_registry.create("trackers", "mlflow"), _run(tmp_path, resumed=True), artifact, steps=(4,))
    client, run = mlflow_run(tmp_path / "mlruns")
    assert run.info.run_id == run_id and run.info.status == "FINISHED" and run.info.run_name == "tiny"
    metrics = mlflow_metrics(client, run_id)
    assert dict(metrics["train/loss"]) == pytest.approx({s: 1.0 / s for s in (1, 2, 3, 4)})
    assert [step for step, _ in metrics["train/loss"]] == [1, 2, 3, 4]  # no step twice
    assert run.data.params["train.lr"] == "0.001" and run.data.params["judge.options.api_key"] == "***redacted***"
    assert run.data.tags["sami_kit.uid"] == "a1b2c3d4e5f6" and run.data.tags["tag.sami-kit"] == "true"
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.json", "summary.md", "tables"} <= artifacts
    table = Path(client.download_artifacts(run_id, "tables/samples_heldout.json", str(tmp_path / "dl")))
    import json

    data = json.loads(table.read_text())
    assert data["columns"][:2] == ["step", "iteration"] and len(data["data"]) == 4  # two tables of two rows


def test_trackio_local_store_reads_back(tmp_path, artifact, sami_kit_registry):
    project = f"sami-test-{uuid.uuid4().hex[:8]}"
    tracker = sami_kit_registry.create("trackers", "trackio", {"project": project})
    run_id = _drive(tracker, _run(tmp_path), artifact)
    assert run_id == "tiny-a1b2c3"
    _drive(sami_kit_registry.create("trackers", "trackio", {"project": project}),
           _run(tmp_path, resumed=True, resume_id=run_id), artifact, steps=(4,))
    assert trackio_runs(project) == [run_id]  # resumed, not a second run
    logs = trackio_logs(project, run_id)
    losses = {row["step"]: row["train/loss"] for row in logs if "train/loss" in row}
    assert losses == pytest.approx({s: 1.0 / s for s in (1, 2, 3, 4)})
    tables = [row["samples/heldout"] for row in logs if "samples/heldout" in row]
    assert tables[0]["_type"] == "trackio.table" and tables[0]["_value"][0]["response"] == "a | b"


def test_wandb_offline_run_files_read_back(tmp_path, artifact, sami_kit_registry):
    options = {"mode": "offline", "dir": str(tmp_path)}
    tracker = sami_kit_registry.create("trackers", "wandb", options)
    run_id = _drive(tracker, _run(tmp_path), artifact)
    assert run_id == "a1b2c3d4e5f6"  # the job's uid: a resume reopens this run even without the manifest's id
    _drive(sami_kit_registry.create("trackers", "wandb", options), _run(tmp_path, resumed=True), artifact,
           steps=(4,))
    runs = wandb_offline_runs(tmp_path / "wandb")
    assert len(runs) == 2 and all(f"-{run_id}" in r.name for r in runs)  # two sessions of ONE run id
    info = wandb_run_info(runs)
    assert {r.run_id for r in info} == {run_id} and info[0].project == "sami-kit" and info[0].display_name == "tiny"
    assert {"sami", "sami-kit", "run"} <= set(info[0].tags)
    history = wandb_history(runs)
    losses = {row["_step"]: row["train/loss"] for row in history if "train/loss" in row}
    assert losses == pytest.approx({s: 1.0 / s for s in (1, 2, 3, 4)})
    tables = [row for row in history if row.get("samples/heldout/_type") == "table-file"]
    assert [row["_step"] for row in tables] == [3, 4]
    import json

    table = json.loads((runs[0] / "files" / tables[0]["samples/heldout/path"]).read_text())
    assert table["columns"] == ["iteration", "query_id", "constitution", "response"]
    assert table["data"][0] == [1, "q0", "+", "a | b"]
    assert (runs[0] / "files" / "summary.md").read_text() == "# SAMI run tiny\n"


def test_all_four_through_one_session(tmp_path, artifact, sami_kit_registry, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = f"sami-test-{uuid.uuid4().hex[:8]}"
    refs = ["tensorboard", {"name": "mlflow"}, {"name": "trackio", "options": {"project": project}},
            {"name": "wandb", "options": {"mode": "offline"}}]
    lines: list[str] = []
    session = TrackingSession.open(refs, sami_kit_registry, name="tiny", directory=tmp_path, config=CONFIG,
                                   store=MemoryState(), axis=StepAxis(lambda t: 2), report=lines.append,
                                   flush_seconds=0.0)
    for t in (1, 2):
        for s in (1, 2):
            session.log_step(t, s, {"train/loss": 0.1 * session.axis.step(t, s)})
        session.log_once(f"iteration:{t}", session.axis.end(t), {"eval/mi": float(t), "iteration": float(t)})
    session.log_artifact("artifact:end:summary.md", artifact)
    session.finish("success")
    assert lines == []
    expected = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}
    assert tensorboard_scalars(tmp_path / "tensorboard")["train/loss"] == pytest.approx(expected)
    client, run = mlflow_run(tmp_path / "mlruns")
    assert dict(mlflow_metrics(client, run.info.run_id)["eval/mi"]) == pytest.approx({2: 1.0, 4: 2.0})
    logs = trackio_logs(project, trackio_runs(project)[0])
    assert {r["step"]: r["train/loss"] for r in logs if "train/loss" in r} == pytest.approx(expected)
    history = wandb_history(wandb_offline_runs(tmp_path / "wandb"))
    assert {r["_step"]: r["eval/mi"] for r in history if "eval/mi" in r} == pytest.approx({2: 1.0, 4: 2.0})
