"""sami-kit plugin: the DeepSpeed trainer.

This module is what the ``sami_kit`` entry point loads at CLI start-up, so it imports nothing heavy: DeepSpeed
and torch are imported by :mod:`sami_kit_deepspeed.trainer` when a run asks for the trainer.
"""

from __future__ import annotations

from typing import Any

from sami_toolkit import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_trainers(register: Any) -> None:
    from .trainer import DeepSpeedTrainer

    register(DeepSpeedTrainer, aliases=("ds",))
