"""The ``deepspeed`` trainer's options and the DeepSpeed config generated from them and the run's ``train:``.

Nothing is left as ``"auto"`` in the generated config (we are not going through the HF Trainer), so what DeepSpeed
runs is fully determined here: the micro-batch and accumulation that give the exact batch mean (spec §10.4), the
precision (spec §10.7), clipping (spec §10.5) and the optimizer with PyTorch's defaults (spec §4.2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions
from sami_toolkit.core.errors import ConfigError
from sami_toolkit.training import TrainSettings


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


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _zero_config(options: DeepSpeedOptions, on_gpu: bool) -> dict:
    zero: dict[str, Any] = {"stage": options.zero_stage}
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
    return zero


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
        "zero_optimization": _zero_config(options, on_gpu),
    }
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
