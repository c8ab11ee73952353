"""A tiny two-iteration run reporting to all four built-in trackers (offline), read back with each tracker's own
reader and compared with metrics.json and train.json; then a SIGKILLed run resumed into the same tracker runs with
no step logged twice; the preflight's missing-library refusal; and ``eval compare`` logging its gate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml
from run_helpers import one_thread, tiny_config  # noqa: F401 (autouse fixture)
from tracker_readers import (mlflow_metrics, mlflow_run, tensorboard_scalar_events, tensorboard_scalars,
                             tensorboard_texts, trackio_logs, trackio_runs, wandb_history, wandb_offline_runs,
                             wandb_run_info)

from sami_toolkit.cli import main
from sami_toolkit.run.loop import FAULT_ENV
from sami_toolkit.tracking.series import _LOOP_KEYS

os.environ.setdefault("TRACKIO_DIR", tempfile.mkdtemp(prefix="sami-kit-trackio-"))  # before trackio is imported


@pytest.fixture(autouse=True)
def _tracker_homes(tmp_path, monkeypatch):
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")


def _config(tmp_path: Path, model_dir: Path, project: str, **changes) -> Path:
    report_to = ["tensorboard", "mlflow", {"name": "trackio", "options": {"project": project}},
                 {"name": "wandb", "options": {"mode": "offline"}}]
    return tiny_config(tmp_path, model_dir, report_to=report_to, **changes)


def _cli(args, capsys, registry=None) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(args, registry=registry)
    return int(exc.value.code or 0), capsys.readouterr().err


def _global_steps(train: dict[int, dict]) -> dict[int, dict]:
    """train.json records by global optimizer step (B_1 = 1, B_2 = 2 in the tiny config)."""
    out, offset = {}, 0
    for t in sorted(train):
        for record in train[t]["metrics"]:
            out[offset + record["step"]] = record
        offset += train[t]["steps"]
    return out


def _eval_numbers(metrics: dict) -> dict[str, float]:
    return {f"eval/{k}": float(v) for k, v in metrics.items()
            if k not in _LOOP_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}


@pytest.mark.slow
def test_two_iterations_reach_every_tracker(tmp_path, tiny_model_dir, sami_kit_registry, capsys):
    from huggingface_hub import ModelCard

    project = f"sami-test-{uuid.uuid4().hex[:8]}"
    code, err = _cli(["run", str(_config(tmp_path, tiny_model_dir, project))], capsys, sami_kit_registry)
    assert code == 0, err
    assert "warning: tracker" not in err, err
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert set(manifest["tracking"]["trackers"]) == {"tensorboard", "mlflow", "trackio", "wandb"}
    assert all(entry.get("id") for entry in manifest["tracking"]["trackers"].values())
    assert manifest["tracking"]["step"] == 3

    train = {t: json.loads((run / "iterations" / str(t) / "train.json").read_text()) for t in (1, 2)}
    metrics = {t: json.loads((run / "iterations" / str(t) / "metrics.json").read_text()) for t in (0, 1, 2)}
    filters = {t: json.loads((run / "iterations" / str(t) / "filter.json").read_text()) for t in (1, 2)}
    steps = _global_steps(train)
    assert sorted(steps) == [1, 2, 3]
    ends = {0: 0, 1: 1, 2: 3}
    for record in steps.values():  # the paper's loss is the mean of its two halves (spec §1.3)
        assert record["loss"] == pytest.approx((record["loss_row"] + record["loss_col"]) / 2, rel=1e-5)

    def expected_step_series(key: str) -> dict[int, float]:
        return {g: float(r[key]) for g, r in steps.items()}

    def expected_iteration_series(key: str) -> dict[int, float]:
        return {ends[t]: _eval_numbers(m)[key] for t, m in metrics.items() if key in _eval_numbers(m)}

    eval_keys = sorted(set().union(*(_eval_numbers(m) for m in metrics.values())))
    assert "eval/mi_infonce_constitutions" in eval_keys and "eval/mi_infonce_constitutions_sem" in eval_keys

    # TensorBoard: EventAccumulator
    scalars = tensorboard_scalars(run / "tensorboard")
    for key in ("loss", "loss_row", "loss_col", "lr", "grad_norm", "seconds", "tokens"):
        assert scalars[f"train/{key}"] == pytest.approx(expected_step_series(key)), key
    for key in eval_keys:
        assert scalars[key] == pytest.approx(expected_iteration_series(key)), key
    assert scalars["pairs/kept"] == {ends[t]: f["kept"] for t, f in filters.items()}
    assert scalars["iteration"][3] == 2.0 and scalars["time/train_s"].keys() == {1, 3}
    assert tensorboard_scalar_events(run / "tensorboard", "train/loss") == [1, 2, 3]
    texts = tensorboard_texts(run / "tensorboard")
    assert set(texts["samples/heldout"]) == {0, 1, 3} and "train/precision" in texts["iterations/notes"][1]
    assert {"summary.md", "report.html", "config.yaml", "principles.yaml", "manifest.json"} <= {
        p.name for p in (run / "tensorboard" / "artifacts").iterdir()}

    # MLflow: MlflowClient on the file store
    client, mlrun = mlflow_run(run / "mlruns")
    history = mlflow_metrics(client, mlrun.info.run_id)
    assert dict(history["train/loss"]) == pytest.approx(expected_step_series("loss"))
    for key in eval_keys:
        assert dict(history[key]) == pytest.approx(expected_iteration_series(key)), key
    assert mlrun.data.params["train.lr"] == "0.001" and mlrun.info.status == "FINISHED"
    assert {"summary.md", "report.html", "config.yaml", "tables"} <= {a.path for a in client.list_artifacts(
        mlrun.info.run_id)}

    # Trackio: the local SQLite store
    (name,) = trackio_runs(project)
    logs = trackio_logs(project, name)
    for key in ("train/loss", "train/grad_norm", *eval_keys):
        got = {row["step"]: row[key] for row in logs if key in row}
        want = expected_step_series(key.split("/", 1)[1]) if key.startswith("train/") else \
            expected_iteration_series(key)
        assert got == pytest.approx(want), key

    # W&B: the offline run files
    runs = wandb_offline_runs(run / "wandb")
    (info,) = wandb_run_info(runs)
    assert info.run_id == manifest["tracking"]["trackers"]["wandb"]["id"] and info.project == "sami-kit"
    rows = wandb_history(runs)
    for key in ("train/loss", "train/lr", *eval_keys):
        got = {row["_step"]: row[key] for row in rows if key in row}
        want = expected_step_series(key.split("/", 1)[1]) if key.startswith("train/") else \
            expected_iteration_series(key)
        assert got == pytest.approx(want), key
    assert any(row.get("samples/heldout/_type") == "table-file" for row in rows)
    assert (runs[0] / "files" / "summary.md").is_file()

    # the model card of every checkpoint, with its iteration's metrics
    for t in (1, 2):
        card = ModelCard.load(run / "iterations" / str(t) / "checkpoint" / "README.md")
        assert {"sami", "sami-kit"} <= set(card.data.tags) and card.data.sami_kit["iteration"] == t
        assert "MI, InfoNCE constitution side (headline bound)" in card.text
        stage = manifest["iterations"][str(t)]["stages"]["train"]
        from sami_toolkit.core.run_dir import hash_layout

        assert stage["hash"] == hash_layout(run / "iterations" / str(t) / "checkpoint")  # card included


SAMI_KIT = [sys.executable, "-c", "from sami_toolkit.cli import main; main()"]


def _subprocess(args: list[str], env_extra: dict, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           **env_extra}
    env.pop(FAULT_ENV, None)
    env.pop("WANDB_SERVICE", None)  # set by this process's own wandb runs: the child must start its own service
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.run([*SAMI_KIT, *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_killed_run_resumes_into_the_same_tracker_runs_without_repeating_a_step(tmp_path, tiny_model_dir):
    project = f"sami-test-{uuid.uuid4().hex[:8]}"
    config = _config(tmp_path, tiny_model_dir, project, evaluators=[])
    env = {"TRACKIO_DIR": os.environ["TRACKIO_DIR"],  # the store this process's trackio reads
           **{var: str(tmp_path / "wandb-home" / var.lower())
              for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR")}}
    killed = _subprocess(["run", str(config)], env, fault="train:2:1")  # after iteration 2's first step
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = tmp_path / "run"
    first = json.loads((run / "manifest.json").read_text())["tracking"]
    resumed = _subprocess(["run", "--resume", str(run)], env)
    assert resumed.returncode == 0, resumed.stderr
    assert "warning: tracker" not in resumed.stderr, resumed.stderr
    state = json.loads((run / "manifest.json").read_text())["tracking"]
    assert state["uid"] == first["uid"]
    for label, entry in first["trackers"].items():
        if entry.get("id"):
            assert state["trackers"][label]["id"] == entry["id"], label  # the same tracker run, reopened

    # no step twice, in any store. Delivery is at-most-once (tracking/session.py): step 2 was handed to the trackers
    # before the kill, so the store has it only if the killed process's worker delivered it in time; step 3 comes
    # from the resumed, retrained iteration.
    def once(steps: list[int]) -> None:
        assert len(steps) == len(set(steps)) and 3 in steps and set(steps) <= {1, 2, 3}, steps

    once(tensorboard_scalar_events(run / "tensorboard", "train/loss"))
    client, mlrun = mlflow_run(run / "mlruns")  # one MLflow run
    once([step for step, _ in mlflow_metrics(client, mlrun.info.run_id)["train/loss"]])
    (name,) = trackio_runs(project)  # one Trackio run
    once([row["step"] for row in trackio_logs(project, name) if "train/loss" in row])
    runs = wandb_offline_runs(run / "wandb")
    assert {info.run_id for info in wandb_run_info(runs)} == {state["trackers"]["wandb"]["id"]}
    once([row["_step"] for row in wandb_history(runs) if "train/loss" in row])
    # the retrained iteration's values are what train.json says
    train2 = json.loads((run / "iterations" / "2" / "train.json").read_text())["metrics"]
    assert tensorboard_scalars(run / "tensorboard")["train/loss"][3] == pytest.approx(train2[1]["loss"])


def test_a_missing_tracker_library_stops_the_run_before_sampling(tmp_path, tiny_model_dir, sami_kit_registry,
                                                                 capsys, monkeypatch):
    from sami_toolkit.builtin.wandb_tracker import WandbTracker

    monkeypatch.setattr(WandbTracker, "requires", ("wandb_is_not_installed_here",))
    config = tiny_config(tmp_path, tiny_model_dir, report_to=["tensorboard", "wandb"])
    code, err = _cli(["run", str(config)], capsys, sami_kit_registry)
    assert code == 2, err
    assert "report_to.1.name: tracker 'wandb' needs wandb_is_not_installed_here, which is not installed" in err
    assert "pip install 'sami-kit[wandb]'" in err and "sampling" not in err
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_report_to_from_the_command_line_and_an_unknown_tracker(tmp_path, tiny_model_dir, sami_kit_registry,
                                                                capsys):
    from sami_toolkit.run.config import load_run_config

    config = tiny_config(tmp_path, tiny_model_dir)
    loaded = load_run_config(config, ["report_to=[tensorboard,trackio]"])
    assert [r.name for r in loaded.report_to] == ["tensorboard", "trackio"]
    assert load_run_config(config, ["report_to=tb"]).report_to[0].name == "tb"
    assert loaded.content_hash() == load_run_config(config).content_hash()  # trackers are not part of the result
    code, err = _cli(["config", "validate", str(config), "-o", "report_to=[tensorbord]"], capsys, sami_kit_registry)
    assert code == 2 and "report_to.0.name" in err and "tensorboard" in err  # did you mean


def test_eval_compare_logs_its_summary_and_gate(tmp_path, sami_kit_registry, sami_kit_fakes, capsys):
    """eval compare on two response files with the constant fake judge, reporting to TensorBoard and MLflow."""
    prompts = [{"id": f"q{i}", "prompt": f"question {i}"} for i in range(30)]
    for side, word in (("cand", "long helpful answer"), ("base", "short")):
        (tmp_path / f"{side}.jsonl").write_text("".join(json.dumps({**p, "response": f"{word} {i}"}) + "\n"
                                                        for i, p in enumerate(prompts)))
    config = {"candidate": {"responses": str(tmp_path / "cand.jsonl")},
              "baseline": {"responses": str(tmp_path / "base.jsonl")},
              "principles": "tldr-mistral", "task": "tldr", "judge": {"name": "constant", "options": {"verdict": "A"}},
              "both_orders": False, "bootstrap": 50, "output": {"dir": str(tmp_path / "out")},
              "report_to": ["tensorboard", "mlflow"]}
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    code, err = _cli(["eval", "compare", "--config", str(tmp_path / "eval.yaml")], capsys, sami_kit_registry)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert code == summary["gate"]["exit_code"], err
    assert "warning: tracker" not in err, err
    scalars = tensorboard_scalars(tmp_path / "out" / "tensorboard")
    assert scalars["compare/win_rate"] == {0: pytest.approx(summary["win_rate"])}
    assert scalars["compare/gate/exit_code"] == {0: float(summary["gate"]["exit_code"])}
    assert scalars["compare/judge_health/failure_rate"] == {0: pytest.approx(summary["judge_health"]["failure_rate"])}
    notes = tensorboard_texts(tmp_path / "out" / "tensorboard")["compare/notes"][0]
    assert "compare/gate/decision" in notes and summary["gate"]["decision"] in notes
    client, mlrun = mlflow_run(tmp_path / "out" / "mlruns")
    assert dict(mlflow_metrics(client, mlrun.info.run_id)["compare/win_rate"]) == {0: pytest.approx(
        summary["win_rate"])}
    assert mlrun.data.tags["sami_kit.job"] == "eval-compare"
    assert {"summary.json", "judgments.jsonl"} <= {a.path for a in client.list_artifacts(mlrun.info.run_id)}


@pytest.mark.slow
def test_multi_process_deepspeed_logs_from_rank_zero_only(tmp_path, tiny_model_dir, sami_kit_registry, capsys):
    """Two gloo ranks train each iteration; the loop (rank 0) forwards rank 0's steps: each step once, no tracker
    files from the launched ranks."""
    pytest.importorskip("deepspeed")
    if "deepspeed" not in sami_kit_registry.names("trainers"):
        pytest.skip("the sami-kit-deepspeed plugin is not installed")
    config = tiny_config(tmp_path, tiny_model_dir, evaluators=[], report_to=["tensorboard", "mlflow"],
                         trainer={"name": "deepspeed", "options": {"num_processes": 2, "zero_stage": 0}})
    code, err = _cli(["run", str(config)], capsys, sami_kit_registry)
    assert code == 0, err
    run = tmp_path / "run"
    train = {t: json.loads((run / "iterations" / str(t) / "train.json").read_text()) for t in (1, 2)}
    steps = _global_steps(train)
    assert tensorboard_scalar_events(run / "tensorboard", "train/loss") == sorted(steps)
    assert tensorboard_scalars(run / "tensorboard")["train/loss"] == pytest.approx(
        {g: r["loss"] for g, r in steps.items()})
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1  # one writer: rank 0's
    client, mlrun = mlflow_run(run / "mlruns")  # exactly one MLflow run
    assert [s for s, _ in mlflow_metrics(client, mlrun.info.run_id)["train/loss"]] == sorted(steps)


def test_a_process_of_rank_one_opens_no_tracker(tmp_path, tiny_model_dir, sami_kit_registry, capsys, monkeypatch):
    """Under torchrun every rank runs the loop; only RANK 0 (or unset) tracks."""
    monkeypatch.setenv("RANK", "1")
    config = tiny_config(tmp_path, tiny_model_dir, evaluators=[], iterations=1, report_to=["tensorboard"])
    code, err = _cli(["run", str(config)], capsys, sami_kit_registry)
    assert code == 0, err
    run = tmp_path / "run"
    assert not (run / "tensorboard").exists()
    assert "tracking" not in json.loads((run / "manifest.json").read_text())
