"""Built-in plugin: the trackers ``tensorboard``, ``wandb``, ``mlflow`` and ``trackio`` (docs/tracking.md).

An ordinary hookimpl module: the classes are imported inside the hook, and each imports its tracker library only
when a run starts it, so every tracker is listed (``sami-kit trackers list``) whether or not its library is
installed; a run that names one whose library is missing stops at preflight with the ``pip install`` to run.
"""

from __future__ import annotations

from typing import Any

from sami_toolkit import hookimpl


@hookimpl
def register_trackers(register: Any) -> None:
    from sami_toolkit.builtin.mlflow_tracker import MlflowTracker
    from sami_toolkit.builtin.tensorboard_tracker import TensorBoardTracker
    from sami_toolkit.builtin.trackio_tracker import TrackioTracker
    from sami_toolkit.builtin.wandb_tracker import WandbTracker

    register(TensorBoardTracker, aliases=("tb",))
    register(WandbTracker, aliases=("weights-and-biases",))
    register(MlflowTracker)
    register(TrackioTracker)
