"""The ``deepspeed`` trainer: the core SAMI step (:func:`sami_toolkit.training.sami_step`) on a DeepSpeed engine.

What DeepSpeed adds over the built-in ``torch`` trainer: ZeRO stages 0–3 (optimizer state, gradients and
parameters sharded across ranks — the paper trained with FSDP full sharding, spec §4.1), CPU offload, and several
processes on one or many nodes. The maths is the core's, so both engines compute the same update (the exact batch
mean of spec §10.4, precision §10.7, schedule and clipping §4.2/§10.5; see :mod:`.engine`).

The plugin, one job per module:

* :mod:`.config` — :class:`DeepSpeedOptions` and the generated DeepSpeed config;
* :mod:`.engine` — one rank: distributed set-up, the engine, the steps, the checkpoint;
* :mod:`.launch` — ``num_processes > 1`` (or a hostfile): the request as JSON, ``torchrun`` or the ``deepspeed``
  launcher on :mod:`.train`, metrics forwarded, rank 0 writes the checkpoint;
* :mod:`.train` — the launched ranks' entry point.

The loss arrives resolved in the request (``request.loss``); launched ranks rebuild it from the settings.
"""

from __future__ import annotations

from sami_toolkit.core.components import Trainer
from sami_toolkit.training import StepProgress, TrainRequest, TrainResult

from .config import DeepSpeedOptions
from .engine import train_in_process
from .launch import launch


class DeepSpeedTrainer(Trainer):
    """DeepSpeed engine (ZeRO 0-3, CPU offload, multi-GPU/multi-node) around the core SAMI step."""

    name = "deepspeed"
    Options = DeepSpeedOptions

    def train(self, request: TrainRequest) -> TrainResult:
        options: DeepSpeedOptions = self.options  # type: ignore[assignment]
        if options.num_processes > 1 or options.hostfile is not None:
            return launch(request, options)
        with StepProgress(request, description="training (deepspeed)") as progress:
            return train_in_process(request, options, report=progress.update)
