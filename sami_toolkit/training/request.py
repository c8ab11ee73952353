"""The contract between the run loop and a trainer plugin: :class:`TrainRequest` in, :class:`TrainResult` out.

The request carries everything already *resolved*: in particular the loss is a callable (a registered Loss
component the caller looked up from ``settings.loss``), not a name, so the training maths never reaches up into
the plugin system (training sits below plugins' users in the layers; docs/architecture.md).  ``settings.loss`` and
``settings.loss_options`` still say which loss it is, for a trainer that must rebuild it in another process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from sami_toolkit.training.settings import TrainSettings

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class TrainRequest:
    """Everything a trainer needs for one iteration. Training always starts from ``base_model`` (spec §2.1).

    ``loss`` maps a score matrix ``[..., C, C]`` to the scalar mean loss over its queries (spec §1.3): the Loss
    component named by ``settings.loss`` with ``settings.loss_options``, built by the caller."""

    base_model: str
    pairs_path: Path
    output_dir: Path
    steps: int
    batch_size: int
    seed: int
    settings: TrainSettings
    loss: Callable[[torch.Tensor], torch.Tensor]
    progress: Callable[[int, dict], None] | None = None
    trust_remote_code: bool = False


@dataclass
class TrainResult:
    """Where the checkpoint went and one metrics dict per optimizer step
    (``step, loss, lr, grad_norm, seconds, tokens``, the loss's parts ``loss_row``/``loss_col`` and ``kl`` when
    ``kl_beta > 0``; see :func:`step_metrics`).

    ``precision`` is what training actually ran in (``fp32``, ``bf16-mixed``, ``bf16``): ``train.precision: auto``
    depends on the machine, and only the trainer knows what it did with the setting.  The loop writes it to
    ``train.json``; a trainer that leaves it None gets what ``train.precision`` resolves to on its device."""

    checkpoint_dir: Path
    steps: int
    metrics: list[dict] = field(default_factory=list)
    precision: str | None = None


def step_metrics(step: int, lr: float, norm: float, seconds: float, metrics: dict) -> dict:
    """The per-step record of :attr:`TrainResult.metrics` (JSON-serialisable), from :func:`sami_step`'s metrics."""
    out = {"step": step, "loss": metrics["loss"], "lr": lr, "grad_norm": norm, "seconds": round(seconds, 4),
           "tokens": metrics["tokens"]}
    for key in ("loss_row", "loss_col", "kl"):  # the parts of the loss (spec §1.3) and the KL term, when measured
        if key in metrics:
            out[key] = metrics[key]
    return out
