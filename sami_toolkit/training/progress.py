"""Per-step reporting of a training run: to the caller's callback, or as a progress bar of its own.

The loop draws one display for the whole run and passes ``request.progress``; a trainer used on its own (a
script, a test, ``sami-kit`` without the loop) still shows where it is, with the project's one progress-bar
layout (:func:`sami_toolkit.core.consoles.progress_bar`).
"""

from __future__ import annotations

import logging
from typing import Any

from sami_toolkit.training.request import TrainRequest

logger = logging.getLogger(__name__)


class StepProgress:
    """Reports each optimizer step: to ``request.progress`` when the caller gave one (the loop draws its own
    display), otherwise as a rich progress bar on stderr."""

    def __init__(self, request: TrainRequest, description: str = "training") -> None:
        self.callback = request.progress
        self.total = request.steps
        self.description = description
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> "StepProgress":
        if self.callback is None:
            from sami_toolkit.core.consoles import progress_bar

            self._progress = progress_bar()
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, info="")
        return self

    def update(self, step: int, metrics: dict) -> None:
        logger.info("step %d/%d loss=%.5f lr=%.3g grad_norm=%.4g %.2fs", step, self.total, metrics["loss"],
                    metrics["lr"], metrics["grad_norm"], metrics["seconds"])
        if self.callback is not None:
            self.callback(step, metrics)
        elif self._progress is not None:
            self._progress.update(self._task, completed=step, info=f"loss {metrics['loss']:.4f}")

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
