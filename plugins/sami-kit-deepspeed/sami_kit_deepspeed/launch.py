"""Several processes: the request written to JSON, ``torchrun`` (or the ``deepspeed`` launcher) started on
``python -m sami_kit_deepspeed.train``, its per-step metrics forwarded, its result checked.

The request crosses the process boundary as JSON, so the resolved loss cannot travel with it: every rank rebuilds
it from ``settings.loss`` / ``settings.loss_options`` through the plugin registry (:func:`request_from_json`), the
same lookup the parent's caller made.  Behaviour is identical for every registered loss; a loss callable that is
not a registered component can only be used in a single process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import sami_toolkit.training as T
from sami_toolkit.core.components import default_cache_dir
from sami_toolkit.core.errors import ConfigError, InfrastructureError
from sami_toolkit.training import TrainRequest, TrainResult, TrainSettings

from .config import DeepSpeedOptions
from .engine import free_port

#: distributed-launch variables of the parent, removed so the launched ranks get the launcher's own
DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", "GROUP_RANK",
            "ROLE_RANK", "ROLE_WORLD_SIZE", "TORCHELASTIC_RUN_ID")


def request_to_json(request: TrainRequest, options: DeepSpeedOptions) -> dict:
    """What a launched rank needs to rebuild the request (everything but the progress callback and the loss
    callable, which :func:`request_from_json` rebuilds from the settings)."""
    return {"request": {"base_model": request.base_model, "pairs_path": str(request.pairs_path),
                        "output_dir": str(request.output_dir), "steps": request.steps,
                        "batch_size": request.batch_size, "seed": request.seed,
                        "settings": request.settings.model_dump(mode="json"),
                        "trust_remote_code": request.trust_remote_code},
            "options": options.model_dump(mode="json")}


def request_from_json(data: dict) -> tuple[TrainRequest, DeepSpeedOptions]:
    """The request of :func:`request_to_json`, with its loss looked up again by name (a plugin may use the
    registry; the training maths may not)."""
    from sami_toolkit import get_component

    r = data["request"]
    settings = TrainSettings.model_validate(r["settings"])
    loss = get_component("losses", settings.loss, settings.loss_options, where="train.loss_options")
    request = TrainRequest(base_model=r["base_model"], pairs_path=Path(r["pairs_path"]),
                           output_dir=Path(r["output_dir"]), steps=int(r["steps"]), batch_size=int(r["batch_size"]),
                           seed=int(r["seed"]), settings=settings, loss=loss,
                           trust_remote_code=bool(r.get("trust_remote_code", False)))
    return request, DeepSpeedOptions.model_validate(data["options"])


def launch_command(options: DeepSpeedOptions, request_file: Path, port: int) -> list[str]:
    """The launcher command line that starts every rank of ``python -m sami_kit_deepspeed.train REQUEST``."""
    if options.launcher == "deepspeed":
        cmd = ["deepspeed", f"--master_port={port}"]
        if options.hostfile is not None:
            cmd.append(f"--hostfile={options.hostfile}")
        if options.num_nodes is not None:
            cmd.append(f"--num_nodes={options.num_nodes}")
        cmd += [f"--num_gpus={options.num_processes}", *options.launcher_args, "--module",
                "sami_kit_deepspeed.train", str(request_file)]
        return cmd
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={options.num_processes}",
            "--master_addr=127.0.0.1", f"--master_port={port}", *options.launcher_args,
            "-m", "sami_kit_deepspeed.train", str(request_file)]


def _read_new_lines(path: Path, offset: int) -> tuple[list[dict], int]:
    """The complete lines rank 0 appended to ``metrics.jsonl`` since ``offset`` (a partial last line waits)."""
    if not path.is_file():
        return [], offset
    with path.open(encoding="utf-8") as handle:
        handle.seek(offset)
        text = handle.read()
    complete = text[:text.rfind("\n") + 1]
    records = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return records, offset + len(complete.encode("utf-8"))


def _launch_env(request: TrainRequest) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(default_cache_dir() / "torch_extensions"))
    env["PYTHONUNBUFFERED"] = "1"
    if request.settings.device == "cpu":
        env.setdefault("DS_ACCELERATOR", "cpu")
    return env


def _run_and_follow(cmd: list[str], env: dict[str, str], launch_dir: Path, request: TrainRequest,
                    options: DeepSpeedOptions) -> tuple[int, list[dict]]:
    """Start the launcher and forward rank 0's per-step metrics until it exits; returns (exit code, metrics)."""
    log_path = launch_dir / "train.log"
    metrics_path = launch_dir / "metrics.jsonl"
    history: list[dict] = []
    offset = 0
    with T.StepProgress(request, description=f"training (deepspeed x{options.num_processes})") as progress, \
            log_path.open("w", encoding="utf-8") as log:
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        except FileNotFoundError as exc:
            raise InfrastructureError(f"could not start the {options.launcher} launcher: {exc}",
                                      hint="is deepspeed installed in this environment (`pip install deepspeed`)?")
        try:
            while True:
                rc = proc.poll()
                records, offset = _read_new_lines(metrics_path, offset)
                for record in records:
                    history.append(record)
                    progress.update(record["step"], record)
                if rc is not None:
                    break
                time.sleep(0.5)
        except BaseException:
            proc.terminate()
            proc.wait(timeout=30)
            raise
    return rc, history


def _raise_on_failure(launch_dir: Path, rc: int) -> None:
    """A rank's configuration error (error.json) with its exit code, or the launcher's failure with the log."""
    error_file = launch_dir / "error.json"
    if error_file.is_file():
        error = json.loads(error_file.read_text(encoding="utf-8"))
        cls = ConfigError if error.get("exit_code") == 2 else InfrastructureError
        raise cls(error["message"])
    if rc != 0:
        log_path = launch_dir / "train.log"
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        raise InfrastructureError(f"DeepSpeed training failed (exit {rc}): {tail[0][:300]}",
                                  hint=f"full log: {log_path}")


def _check_rank_digests(launch_dir: Path) -> None:
    """Data-parallel ranks must end with identical weights; anything else is a broken all-reduce."""
    digests = {json.loads(p.read_text())["final_sha256"] for p in launch_dir.glob("rank*.json")}
    if len(digests) > 1:
        raise InfrastructureError(f"DeepSpeed ranks ended with different weights ({len(digests)} distinct digests)",
                                  hint=f"see {launch_dir}/rank*.json and train.log")


def launch(request: TrainRequest, options: DeepSpeedOptions) -> TrainResult:
    """Run the training in ``num_processes`` launched processes and wait; per-step metrics are forwarded to
    ``request.progress`` (or a progress bar) as rank 0 writes them."""
    from sami_toolkit.core.io import atomic_write_json, remove_tree

    T.load_pairs(request.pairs_path)  # fail fast, before starting processes
    launch_dir = Path(request.output_dir).with_name(f".{Path(request.output_dir).name}.deepspeed")
    remove_tree(launch_dir)
    launch_dir.mkdir(parents=True)
    atomic_write_json(launch_dir / "request.json", request_to_json(request, options))
    env = _launch_env(request)
    cmd = launch_command(options, launch_dir / "request.json", options.master_port or free_port())
    rc, history = _run_and_follow(cmd, env, launch_dir, request, options)
    _raise_on_failure(launch_dir, rc)
    _check_rank_digests(launch_dir)
    if not options.keep_launch_dir:
        shutil.rmtree(launch_dir, ignore_errors=True)  # leftovers of a finished run must not fail it
    # the ranks ran on CPUs when DS_ACCELERATOR=cpu was set above, else on the GPUs the launcher gave them
    device = "cpu" if env.get("DS_ACCELERATOR") == "cpu" else T.resolve_device(request.settings.device)
    return TrainResult(checkpoint_dir=Path(request.output_dir), steps=len(history), metrics=history,
                       precision=T.resolve_precision(request.settings, device))
