"""Read back what each tracker stored, with that tracker's own reader (shared by the tracker tests).

* TensorBoard: ``EventAccumulator`` over the event files;
* MLflow: ``MlflowClient`` on the file store;
* Trackio: its local SQLite store (``SQLiteStorage``, under ``$TRACKIO_DIR``);
* W&B: the offline run files — ``run-<id>.wandb`` is a LevelDB-style log of ``wandb_internal_pb2.Record``
  protobufs (wandb's Go core has the only reader, so the framing is undone here: 7-byte header ``:W&B`` + magic +
  version, then 32 KiB blocks of ``crc32(4) length(2) type(1)`` chunks, types full/first/middle/last), and
  ``files/`` holds the saved files.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def tensorboard_scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def tensorboard_scalar_events(log_dir: Path, tag: str) -> list[int]:
    """Every step of ``tag``'s events, repeats included (to check no step was written twice)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def tensorboard_texts(log_dir: Path) -> dict[str, dict[int, str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        out[tag.removesuffix("/text_summary")] = {e.step: b"".join(e.tensor_proto.string_val).decode()
                                                  for e in acc.Tensors(tag)}
    return out


def mlflow_run(store: Path, experiment: str = "sami-kit") -> tuple[Any, Any]:
    """``(client, run)`` of the only run in ``experiment`` of the file store ``store``."""
    import os

    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=store.as_uri())
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def mlflow_metrics(client: Any, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = client.get_run(run_id).data.metrics
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}


def trackio_logs(project: str, run_name: str) -> list[dict[str, Any]]:
    from trackio.sqlite_storage import SQLiteStorage

    return SQLiteStorage.get_logs(project, run_name)


def trackio_runs(project: str) -> list[str]:
    from trackio.sqlite_storage import SQLiteStorage

    return SQLiteStorage.get_runs(project)


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of one ``run-<id>.wandb`` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    records, chunks, pos = [], b"", 7
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # block trailer too short for a chunk header: padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind in (FULL, FIRST):
            chunks = payload
        else:
            chunks += payload
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(chunks)
            records.append(record)
    return records


def wandb_offline_runs(wandb_dir: Path) -> list[Path]:
    return sorted(wandb_dir.glob("offline-run-*"))


def wandb_history(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Every history row (``_step`` and the logged keys) of the given offline run directories, in order."""
    rows = []
    for run_dir in run_dirs:
        for path in sorted(run_dir.glob("run-*.wandb")):
            for record in wandb_records(path):
                if record.WhichOneof("record_type") == "history":
                    rows.append({("/".join(item.nested_key) if item.nested_key else item.key): json.loads(item.value_json)
                                 for item in record.history.item})
    return rows


def wandb_run_info(run_dirs: list[Path]) -> list[Any]:
    """The ``run`` records (id, project, name, tags, config) of the given offline run directories."""
    out = []
    for run_dir in run_dirs:
        for path in sorted(run_dir.glob("run-*.wandb")):
            out += [r.run for r in wandb_records(path) if r.WhichOneof("record_type") == "run"]
    return out
