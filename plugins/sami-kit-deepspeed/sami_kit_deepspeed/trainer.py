"""The ``deepspeed`` trainer: the core SAMI step (:func:`sami_toolkit.training.step.sami_step`) on a DeepSpeed engine.

What DeepSpeed adds over the built-in ``torch`` trainer: ZeRO stages 0–3 (optimizer state, gradients and
parameters sharded across ranks — the paper trained with FSDP full sharding, spec §4.1), CPU offload, and several
processes on one or many nodes. The maths is the core's, so both engines compute the same update:

* **exact batch mean** (spec §10.4): a global batch of ``batch_size`` queries is split evenly over the ranks and
  into micro-batches of ``micro_batch_size`` queries; DeepSpeed's own gradient accumulation runs
  ``gradient_accumulation_steps = ceil(per_rank / micro_batch_size)`` micro-steps, ``engine.backward`` divides
  each loss by that number and the ranks' gradients are *averaged*, so each micro-batch's mean loss is multiplied
  by ``GAS * world * m / batch_size`` before ``engine.backward`` — the result is exactly the gradient of the mean
  per-query loss over the global batch, whatever the micro-batch sizes.
* **precision** (spec §10.7): ``bf16-mixed`` keeps fp32 parameters (they *are* the master weights) and runs the
  forward under ``torch.autocast(bf16)``, like the torch trainer; ``bf16`` uses DeepSpeed's bf16 mode (bf16
  parameters, fp32 master copy inside the optimizer; the bf16 module weights are what is saved).
* **schedule and clipping** (spec §4.2, §10.5): the core's LambdaLR (constant or the authors' linear warm-up) is
  handed to DeepSpeed as the client scheduler; ``max_grad_norm`` becomes DeepSpeed's ``gradient_clipping``.

A single process sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` itself when they are
not set (a free local port). ``num_processes > 1`` writes the request to JSON and launches
``torchrun -m sami_kit_deepspeed.train`` (or the ``deepspeed`` launcher with a hostfile for several nodes), then
waits and returns the result; rank 0 writes the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions, Trainer, default_cache_dir
from sami_toolkit.core.errors import ConfigError, InfrastructureError
from sami_toolkit.training.step import TrainRequest, TrainResult, TrainSettings

DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", "GROUP_RANK",
            "ROLE_RANK", "ROLE_WORLD_SIZE", "TORCHELASTIC_RUN_ID")


class DeepSpeedOptions(ComponentOptions):
    """Engine settings of the ``deepspeed`` trainer (the SAMI settings are the run config's ``train:``)."""

    zero_stage: int = Field(2, ge=0, le=3, description="ZeRO stage: 0 = data parallel only, 1 = shard optimizer "
                                                       "state, 2 = + gradients, 3 = + parameters (like the paper's "
                                                       "FSDP full sharding).")
    offload_optimizer: bool = Field(False, description="Keep optimizer state on the CPU (ZeRO 1-3; saves GPU "
                                                       "memory, slower).")
    offload_param: bool = Field(False, description="Keep parameters on the CPU between uses (ZeRO-3 only).")
    torch_adam: bool | None = Field(
        None, description="Use torch.optim.AdamW inside DeepSpeed instead of its compiled Adam ops; null = true, "
                          "except with offload_optimizer on GPUs (DeepSpeed's CPU Adam, much faster there).")
    num_processes: int = Field(1, ge=1, description="Processes (GPUs) on this node; > 1 launches torchrun and "
                                                    "waits for it.")
    launcher: Literal["torchrun", "deepspeed"] = Field(
        "torchrun", description="How num_processes > 1 (or a hostfile) is launched: torchrun on this node, or the "
                                "deepspeed launcher (multi-node with hostfile; needs a shared filesystem).")
    hostfile: Path | None = Field(None, description="DeepSpeed hostfile ('host slots=N' per line) for multi-node "
                                                    "training with launcher: deepspeed.")
    num_nodes: int | None = Field(None, ge=1, description="Nodes to use from the hostfile (deepspeed launcher).")
    master_port: int | None = Field(None, ge=1, le=65535, description="Rendezvous port; null = a free local port.")
    launcher_args: list[str] = Field(default_factory=list, description="Extra arguments for the launcher, put "
                                                                        "before the module name.")
    backend: Literal["auto", "nccl", "gloo"] = Field("auto", description="torch.distributed backend; auto = nccl "
                                                                         "on GPUs, gloo on CPU.")
    config_overrides: dict[str, Any] = Field(default_factory=dict, description="Merged (recursively) into the "
                                                                               "generated DeepSpeed config.")
    keep_launch_dir: bool = Field(False, description="Keep the launch directory (request, per-step metrics, log, "
                                                     "per-rank weight digests) after a multi-process run.")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build_ds_config(settings: TrainSettings, options: DeepSpeedOptions, *, world_size: int, gas: int,
                    on_gpu: bool) -> dict:
    """The DeepSpeed config for one run (nothing left as ``"auto"``: we are not going through the HF Trainer)."""
    mbs = settings.micro_batch_size
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": mbs,
        "gradient_accumulation_steps": gas,
        "train_batch_size": mbs * gas * world_size,
        "gradient_clipping": settings.max_grad_norm or 0.0,
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": settings.precision == "bf16"},
        "zero_optimization": {"stage": options.zero_stage},
    }
    zero = config["zero_optimization"]
    if options.offload_optimizer:
        if options.zero_stage == 0:
            raise ConfigError("trainer option offload_optimizer needs zero_stage 1, 2 or 3")
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
    if options.offload_param:
        if options.zero_stage != 3:
            raise ConfigError("trainer option offload_param needs zero_stage: 3")
        zero["offload_param"] = {"device": "cpu", "pin_memory": on_gpu}
    if options.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # rank 0 gets full weights to save
    if settings.optimizer == "adamw":
        # torch's AdamW needs no compiled op (DeepSpeed's FusedAdam/CPU Adam are JIT-built on first use);
        # only ZeRO-Offload on GPUs gains enough from CPU Adam to be worth the build
        default = not (on_gpu and options.offload_optimizer)
        torch_adam = default if options.torch_adam is None else options.torch_adam
        config["optimizer"] = {"type": "AdamW", "params": {
            "lr": settings.lr, "betas": [0.9, 0.999], "eps": 1e-8,  # PyTorch defaults (spec §4.2)
            "weight_decay": 0.01 if settings.weight_decay is None else settings.weight_decay,
            "torch_adam": torch_adam}}
        if torch_adam and options.offload_optimizer:
            config["zero_force_ds_cpu_optimizer"] = False
    elif options.offload_optimizer:  # RMSprop is a client optimizer; allow it on the CPU
        config["zero_force_ds_cpu_optimizer"] = False
    return _merge(config, options.config_overrides)


def _prepare_environment(settings: TrainSettings) -> None:
    """Environment DeepSpeed reads at import/initialisation time."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(default_cache_dir() / "torch_extensions"))
    if settings.device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        # a single local process (the loop calls trainer.train in-process)
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(_free_port())})
    else:
        for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise InfrastructureError(f"distributed environment is incomplete: {name} is not set",
                                          hint="launch with torchrun or the deepspeed launcher, or unset RANK "
                                               "and WORLD_SIZE for a single process")
        os.environ.setdefault("LOCAL_RANK", "0")


def _init_distributed(settings: TrainSettings, options: DeepSpeedOptions) -> tuple[Any, str]:
    """Initialise torch.distributed once per process (later iterations reuse the group); returns the accelerator
    and the device to put tensors on."""
    import deepspeed
    import torch.distributed as dist
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    on_gpu = accelerator.device_name() == "cuda"
    if settings.device == "cpu" and on_gpu:
        raise ConfigError("train.device is 'cpu' but DeepSpeed was already set up for CUDA in this process",
                          hint="start with DS_ACCELERATOR=cpu, or set train.device: auto")
    if settings.device == "cuda" and not on_gpu:
        raise ConfigError("train.device is 'cuda' but DeepSpeed found no CUDA device",
                          hint="set train.device: auto (or cpu)")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if on_gpu:
        accelerator.set_device(local_rank)
    if not dist.is_initialized():
        backend = options.backend if options.backend != "auto" else ("nccl" if on_gpu else "gloo")
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
    device = f"cuda:{local_rank}" if on_gpu else "cpu"
    return accelerator, device


def weights_digest(module: Any) -> str:
    """sha256 over every parameter's name and bytes (ranks of a data-parallel run must agree)."""
    import torch

    digest = hashlib.sha256()
    for name, param in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(param.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


class EngineModel:
    """What the core's scoring sees under DeepSpeed: a causal LM whose forward is ``engine.forward``.

    DeepSpeed does per-micro-step bookkeeping in ``engine.forward`` (ZeRO's ``clear_backward_seen_flag`` moves
    its gradient buffers from *copy* to *accumulate* mode, ZeRO-3 marks the forward for parameter discovery).
    Calling the wrapped module — or its decoder, as the scorer's LM-head-on-response-positions path does —
    silently skips it: under ZeRO-3 each micro-batch then *overwrites* the accumulated gradient, the very bug of
    spec §10.4. So this proxy exposes the forward and the config only (no ``get_decoder``, which makes the scorer
    take the full-forward path)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.config = engine.module.config

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._engine(*args, **kwargs)

    def parameters(self) -> Any:
        return self._engine.module.parameters()

    def disable_adapter(self) -> Any:
        """peft's context manager (LoRA: the KL reference is the base network)."""
        return self._engine.module.disable_adapter()


def train_in_process(request: TrainRequest, options: DeepSpeedOptions, *,
                     report: Callable[[int, dict], None] | None = None,
                     launch_dir: Path | None = None) -> TrainResult:
    """Run this process's rank of the training (the whole training when it is the only process).

    ``report(step, metrics)`` is called on rank 0 after every optimizer step. With ``launch_dir`` (launched
    runs) every rank writes ``rank<N>.json`` with digests of its initial and final weights."""
    import torch
    import torch.distributed as dist

    from sami_toolkit.training import step as T

    settings = request.settings
    if settings.lora is not None and options.zero_stage == 3:
        raise ConfigError("train.lora with the deepspeed trainer needs zero_stage 0, 1 or 2",
                          hint="LoRA adapters are small: ZeRO-2 is enough, or use the torch trainer")
    pairs = T.load_pairs(request.pairs_path)
    batches = T.training_batches(pairs, steps=request.steps, batch_size=request.batch_size, seed=request.seed,
                                 source=str(request.pairs_path))
    loss_fn = T.build_loss_fn(settings)

    _prepare_environment(settings)
    accelerator, device = _init_distributed(settings, options)
    import deepspeed

    world, rank = dist.get_world_size(), dist.get_rank()
    if request.batch_size % world:
        raise ConfigError(f"batch_size={request.batch_size} does not split evenly over {world} processes",
                          hint=f"use a batch size that is a multiple of {world}")
    per_rank = request.batch_size // world
    gas = math.ceil(per_rank / settings.micro_batch_size)
    ds_config = build_ds_config(settings, options, world_size=world, gas=gas, on_gpu=device != "cpu")

    T.seed_everything(request.seed)
    hf_ds_config = None
    if options.zero_stage == 3:  # load the weights straight into ZeRO-3 partitions (zero.Init)
        from transformers.integrations import HfDeepSpeedConfig

        hf_ds_config = HfDeepSpeedConfig(ds_config)  # noqa: F841 - must stay alive while the model loads
    model, tokenizer = T.load_policy(request, "cpu" if options.zero_stage != 3 else device)
    reference = T.load_reference(request, device)
    initial = weights_digest(model) if launch_dir is not None and options.zero_stage != 3 else None
    params = [p for p in model.parameters() if p.requires_grad]
    client_optimizer = None if settings.optimizer == "adamw" else T.build_optimizer(params, settings)
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=params, optimizer=client_optimizer, config=ds_config,
        lr_scheduler=lambda optimizer: T.build_scheduler(optimizer, settings, request.steps))
    module = engine.module
    scorer = EngineModel(engine)
    trainable = [p for p in module.parameters() if p.requires_grad]

    history: list[dict] = []
    for step, batch in enumerate(batches, 1):
        started = time.perf_counter()
        local = batch[rank * per_rank:(rank + 1) * per_rank]
        lr = float(engine.get_lr()[0])
        state: dict[str, float] = {}

        def backward(loss: Any) -> None:
            # engine.backward divides by GAS; the ranks' gradients are averaged: undo both so the accumulated
            # gradient is Σ_micro (m / batch_size) ∇ mean-loss(micro) over the global batch (spec §10.4)
            engine.backward(loss * gas)
            if options.zero_stage == 0 and engine.is_gradient_accumulation_boundary():
                state["norm"] = T.grad_norm(trainable)  # already all-reduced, not yet clipped
            engine.step()

        metrics = T.sami_step(scorer, tokenizer, local, settings, loss_fn=loss_fn, reference_model=reference,
                              backward=backward, total_queries=request.batch_size, weight_scale=world)
        norm = state.get("norm") if options.zero_stage == 0 else engine.get_global_grad_norm()
        totals = torch.tensor([metrics["loss"] * len(local), float(metrics["tokens"]),
                               metrics.get("kl", 0.0) * len(local)], dtype=torch.float64, device=device)
        dist.all_reduce(totals)
        summary = {"loss": float(totals[0]) / request.batch_size, "tokens": int(totals[1])}
        if "kl" in metrics:
            summary["kl"] = float(totals[2]) / request.batch_size
        record = T.step_metrics(step, lr, float(norm) if norm is not None else float("nan"),
                                time.perf_counter() - started, summary)
        history.append(record)
        if rank == 0 and report is not None:
            report(step, record)

    module.eval()
    state_dict = engine._zero3_consolidated_16bit_state_dict() if options.zero_stage == 3 else None  # collective
    if launch_dir is not None and options.zero_stage != 3:
        (launch_dir / f"rank{rank}.json").write_text(json.dumps(
            {"rank": rank, "initial_sha256": initial, "final_sha256": weights_digest(module)}))
    if rank == 0:
        lora_save = settings.lora.save if settings.lora is not None else "merged"
        T.save_checkpoint(module, tokenizer, request.output_dir, state_dict=state_dict, lora_save=lora_save)
    dist.barrier()
    if hasattr(engine, "destroy"):  # release hooks and buffers before the next iteration's engine
        engine.destroy()
    del engine, module, model, reference, state_dict
    import gc

    gc.collect()
    return TrainResult(checkpoint_dir=Path(request.output_dir), steps=len(history), metrics=history,
                       precision=T.resolve_precision(settings, device))


# --------------------------------------------------------------------------------------------- launching
def request_to_json(request: TrainRequest, options: DeepSpeedOptions) -> dict:
    return {"request": {"base_model": request.base_model, "pairs_path": str(request.pairs_path),
                        "output_dir": str(request.output_dir), "steps": request.steps,
                        "batch_size": request.batch_size, "seed": request.seed,
                        "settings": request.settings.model_dump(mode="json"),
                        "trust_remote_code": request.trust_remote_code},
            "options": options.model_dump(mode="json")}


def request_from_json(data: dict) -> tuple[TrainRequest, DeepSpeedOptions]:
    r = data["request"]
    request = TrainRequest(base_model=r["base_model"], pairs_path=Path(r["pairs_path"]),
                           output_dir=Path(r["output_dir"]), steps=int(r["steps"]), batch_size=int(r["batch_size"]),
                           seed=int(r["seed"]), settings=TrainSettings.model_validate(r["settings"]),
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
    if not path.is_file():
        return [], offset
    with path.open(encoding="utf-8") as handle:
        handle.seek(offset)
        text = handle.read()
    complete = text[:text.rfind("\n") + 1]
    records = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return records, offset + len(complete.encode("utf-8"))


def launch(request: TrainRequest, options: DeepSpeedOptions) -> TrainResult:
    """Run the training in ``num_processes`` launched processes and wait; per-step metrics are forwarded to
    ``request.progress`` (or a progress bar) as rank 0 writes them."""
    from sami_toolkit.training import step as T

    T.load_pairs(request.pairs_path)  # fail fast, before starting processes
    launch_dir = Path(request.output_dir).with_name(f".{Path(request.output_dir).name}.deepspeed")
    shutil.rmtree(launch_dir, ignore_errors=True)
    launch_dir.mkdir(parents=True)
    request_file = launch_dir / "request.json"
    request_file.write_text(json.dumps(request_to_json(request, options), indent=2), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(default_cache_dir() / "torch_extensions"))
    env["PYTHONUNBUFFERED"] = "1"
    if request.settings.device == "cpu":
        env.setdefault("DS_ACCELERATOR", "cpu")
    cmd = launch_command(options, request_file, options.master_port or _free_port())
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
    error_file = launch_dir / "error.json"
    if error_file.is_file():
        error = json.loads(error_file.read_text(encoding="utf-8"))
        cls = ConfigError if error.get("exit_code") == 2 else InfrastructureError
        raise cls(error["message"])
    if rc != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        raise InfrastructureError(f"DeepSpeed training failed (exit {rc}): {tail[0][:300]}",
                                  hint=f"full log: {log_path}")
    _check_rank_digests(launch_dir)
    if not options.keep_launch_dir:
        shutil.rmtree(launch_dir, ignore_errors=True)
    # the ranks ran on CPUs when DS_ACCELERATOR=cpu was set above, else on the GPUs the launcher gave them
    device = "cpu" if env.get("DS_ACCELERATOR") == "cpu" else T.resolve_device(request.settings.device)
    return TrainResult(checkpoint_dir=Path(request.output_dir), steps=len(history), metrics=history,
                       precision=T.resolve_precision(request.settings, device))


def _check_rank_digests(launch_dir: Path) -> None:
    """Data-parallel ranks must end with identical weights; anything else is a broken all-reduce."""
    digests = {json.loads(p.read_text())["final_sha256"] for p in launch_dir.glob("rank*.json")}
    if len(digests) > 1:
        raise InfrastructureError(f"DeepSpeed ranks ended with different weights ({len(digests)} distinct digests)",
                                  hint=f"see {launch_dir}/rank*.json and train.log")


class DeepSpeedTrainer(Trainer):
    """DeepSpeed engine (ZeRO 0-3, CPU offload, multi-GPU/multi-node) around the core SAMI step."""

    name = "deepspeed"
    Options = DeepSpeedOptions

    def train(self, request: TrainRequest) -> TrainResult:
        options: DeepSpeedOptions = self.options  # type: ignore[assignment]
        if options.num_processes > 1 or options.hostfile is not None:
            return launch(request, options)
        from sami_toolkit.training import step as T

        with T.StepProgress(request, description="training (deepspeed)") as progress:
            return train_in_process(request, options, report=progress.update)
