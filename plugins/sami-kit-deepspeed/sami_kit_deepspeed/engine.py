"""One rank of a DeepSpeed training: the distributed set-up, the engine, and the core's SAMI step on it.

What this adds over the built-in ``torch`` trainer, the maths being the core's (``sami_toolkit.training``):

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
not set (a free local port).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import sami_toolkit.training as T
from sami_toolkit.core.components import default_cache_dir
from sami_toolkit.core.errors import ConfigError, InfrastructureError
from sami_toolkit.training import TrainRequest, TrainResult, TrainSettings

from .config import DeepSpeedOptions, build_ds_config


def free_port() -> int:
    """A TCP port nobody listens on now (the rendezvous port of a local run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare_environment(settings: TrainSettings) -> None:
    """Environment DeepSpeed reads at import/initialisation time."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(default_cache_dir() / "torch_extensions"))
    if settings.device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        # a single local process (the loop calls trainer.train in-process)
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(free_port())})
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


@dataclass
class _Rank:
    """This process's share of the run: its place in the world, its engine and what the step needs."""

    world: int
    rank: int
    per_rank: int
    gas: int
    device: str
    engine: Any = None
    tokenizer: Any = None
    reference: Any = None
    trainable: list | None = None
    initial_digest: str | None = None
    hf_ds_config: Any = None


def _split_batch(request: TrainRequest, device: str) -> _Rank:
    """Queries per rank and DeepSpeed's accumulation steps for this world (spec §10.4)."""
    import torch.distributed as dist

    world, rank = dist.get_world_size(), dist.get_rank()
    if request.batch_size % world:
        raise ConfigError(f"batch_size={request.batch_size} does not split evenly over {world} processes",
                          hint=f"use a batch size that is a multiple of {world}")
    per_rank = request.batch_size // world
    return _Rank(world, rank, per_rank, math.ceil(per_rank / request.settings.micro_batch_size), device)


def _build_engine(request: TrainRequest, options: DeepSpeedOptions, run: _Rank, *, digest: bool) -> None:
    """Load the policy fresh from the base weights (spec §2.1) and wrap it in a DeepSpeed engine."""
    import deepspeed

    settings = request.settings
    ds_config = build_ds_config(settings, options, world_size=run.world, gas=run.gas, on_gpu=run.device != "cpu")
    T.seed_everything(request.seed)
    if options.zero_stage == 3:  # load the weights straight into ZeRO-3 partitions (zero.Init)
        from transformers.integrations import HfDeepSpeedConfig

        # transformers holds only a weak reference: it must stay alive while the model loads and trains
        run.hf_ds_config = HfDeepSpeedConfig(ds_config)
    model, run.tokenizer = T.load_policy(request, "cpu" if options.zero_stage != 3 else run.device)
    run.reference = T.load_reference(request, run.device)
    run.initial_digest = weights_digest(model) if digest and options.zero_stage != 3 else None
    params = [p for p in model.parameters() if p.requires_grad]
    client_optimizer = None if settings.optimizer == "adamw" else T.build_optimizer(params, settings)
    run.engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=params, optimizer=client_optimizer, config=ds_config,
        lr_scheduler=lambda optimizer: T.build_scheduler(optimizer, settings, request.steps))
    run.trainable = [p for p in run.engine.module.parameters() if p.requires_grad]


def _train_step(request: TrainRequest, options: DeepSpeedOptions, run: _Rank, step: int, batch: list) -> dict:
    """One optimizer step of the global batch; returns the step's record, summed over the ranks."""
    import torch
    import torch.distributed as dist

    started = time.perf_counter()
    engine, gas = run.engine, run.gas
    local = batch[run.rank * run.per_rank:(run.rank + 1) * run.per_rank]
    lr = float(engine.get_lr()[0])
    state: dict[str, float] = {}

    def backward(loss: Any) -> None:
        # engine.backward divides by GAS; the ranks' gradients are averaged: undo both so the accumulated
        # gradient is Σ_micro (m / batch_size) ∇ mean-loss(micro) over the global batch (spec §10.4)
        engine.backward(loss * gas)
        if options.zero_stage == 0 and engine.is_gradient_accumulation_boundary():
            state["norm"] = T.grad_norm(run.trainable)  # already all-reduced, not yet clipped
        engine.step()

    metrics = T.sami_step(EngineModel(engine), run.tokenizer, local, request.settings, loss_fn=request.loss,
                          reference_model=run.reference, backward=backward, total_queries=request.batch_size,
                          weight_scale=run.world)
    norm = state.get("norm") if options.zero_stage == 0 else engine.get_global_grad_norm()
    # sums over the ranks' queries; the loss's two halves too (spec §1.3), so trackers see L_row and L_col
    parts = ("loss", "loss_row", "loss_col", "kl")
    totals = torch.tensor([float(metrics["tokens"]), *(metrics.get(k, 0.0) * len(local) for k in parts)],
                          dtype=torch.float64, device=run.device)
    dist.all_reduce(totals)
    summary = {"tokens": int(totals[0])}
    for key, total in zip(parts, totals[1:].tolist()):
        if key in metrics:
            summary[key] = total / request.batch_size
    return T.step_metrics(step, lr, float(norm) if norm is not None else float("nan"),
                          time.perf_counter() - started, summary)


def _save_and_release(request: TrainRequest, options: DeepSpeedOptions, run: _Rank, launch_dir: Path | None) -> None:
    """Rank 0 saves the checkpoint (ZeRO-3 gathers the full weights first, a collective); every rank of a launched
    run writes its weight digests; then the engine is destroyed before the next iteration builds its own."""
    import gc

    import torch.distributed as dist

    engine = run.engine
    module = engine.module
    module.eval()
    state_dict = engine._zero3_consolidated_16bit_state_dict() if options.zero_stage == 3 else None  # collective
    if launch_dir is not None and options.zero_stage != 3:
        (launch_dir / f"rank{run.rank}.json").write_text(json.dumps(
            {"rank": run.rank, "initial_sha256": run.initial_digest, "final_sha256": weights_digest(module)}))
    if run.rank == 0:
        settings = request.settings
        lora_save = settings.lora.save if settings.lora is not None else "merged"
        T.save_checkpoint(module, run.tokenizer, request.output_dir, state_dict=state_dict, lora_save=lora_save)
    dist.barrier()
    if hasattr(engine, "destroy"):  # release hooks and buffers before the next iteration's engine
        engine.destroy()
    run.engine = run.reference = run.trainable = None
    del engine, module, state_dict
    gc.collect()


def train_in_process(request: TrainRequest, options: DeepSpeedOptions, *,
                     report: Callable[[int, dict], None] | None = None,
                     launch_dir: Path | None = None) -> TrainResult:
    """Run this process's rank of the training (the whole training when it is the only process).

    ``report(step, metrics)`` is called on rank 0 after every optimizer step. With ``launch_dir`` (launched
    runs) every rank writes ``rank<N>.json`` with digests of its initial and final weights."""
    settings = request.settings
    if settings.lora is not None and options.zero_stage == 3:
        raise ConfigError("train.lora with the deepspeed trainer needs zero_stage 0, 1 or 2",
                          hint="LoRA adapters are small: ZeRO-2 is enough, or use the torch trainer")
    pairs = T.load_pairs(request.pairs_path)
    batches = T.training_batches(pairs, steps=request.steps, batch_size=request.batch_size, seed=request.seed,
                                 source=str(request.pairs_path))
    _prepare_environment(settings)
    _, device = _init_distributed(settings, options)
    run = _split_batch(request, device)
    _build_engine(request, options, run, digest=launch_dir is not None)

    history: list[dict] = []
    for step, batch in enumerate(batches, 1):
        record = _train_step(request, options, run, step, batch)
        history.append(record)
        if run.rank == 0 and report is not None:
            report(step, record)
    _save_and_release(request, options, run, launch_dir)
    return TrainResult(checkpoint_dir=Path(request.output_dir), steps=len(history), metrics=history,
                       precision=T.resolve_precision(settings, device))
