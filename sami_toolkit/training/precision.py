"""Where and in what precision training runs: the device, the concrete precision of ``auto``, autocast (spec §10.7).

Every trainer and the loop resolve ``train.device`` / ``train.precision`` through these functions, so the
precision recorded in ``train.json`` is the one the step actually ran in.
"""

from __future__ import annotations

from typing import Any

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.training.settings import TrainSettings


def resolve_device(setting: str) -> str:
    """``auto`` → ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is a configuration error."""
    import torch

    from sami_toolkit.models.devices import resolve_auto_device

    if setting == "auto":
        return resolve_auto_device(setting)
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available",
                          hint="set train.device: auto (or cpu)")
    return setting


def resolve_precision(settings: TrainSettings, device: str) -> str:
    """The concrete precision for ``device``: ``auto`` becomes ``bf16-mixed`` where bf16 is fast, else ``fp32``."""
    if settings.precision != "auto":
        return settings.precision
    from sami_toolkit.models.devices import bf16_is_fast

    return "bf16-mixed" if bf16_is_fast(device) else "fp32"


def weight_dtype(settings: TrainSettings) -> str:
    """The dtype the trainable weights live in: bf16 only for ``precision: bf16`` (spec §10.7)."""
    return "bfloat16" if settings.precision == "bf16" else "float32"


def autocast_context(settings: TrainSettings, device: str) -> Any:
    """bf16 autocast for ``bf16-mixed`` (fp32 master weights, bf16 compute; CPU and CUDA), else a no-op."""
    import contextlib

    import torch

    if resolve_precision(settings, device) == "bf16-mixed":
        return torch.autocast(device_type="cuda" if str(device).startswith("cuda") else "cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
