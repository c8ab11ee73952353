"""Built-in plugin: trainers (an ordinary hookimpl module; component classes are imported inside the hooks)."""

from __future__ import annotations

from typing import Any

from sami_toolkit import hookimpl


@hookimpl
def register_trainers(register: Any) -> None:
    from sami_toolkit.builtin.torch_trainer import TorchTrainer

    register(TorchTrainer)
