"""Experiment tracking: a run's (and ``eval compare``'s) numbers, tables and files sent to the trackers of
``report_to`` (TensorBoard, Weights & Biases, MLflow, Trackio or any plugin's ``Tracker``).

* :mod:`~sami_toolkit.tracking.session` — the fan-out: rank 0 only, one step axis, resume without a second
  tracker run, no step twice; :mod:`~sami_toolkit.tracking.worker` — each tracker on a thread of its own, failures
  reported once and never fatal;
* :mod:`~sami_toolkit.tracking.series` — the names of what is logged; :mod:`~sami_toolkit.tracking.tables` — the
  sample-response tables; :mod:`~sami_toolkit.tracking.run_tracking` — what the loop calls.

A layer above ``report`` (it sends what the run wrote) and below ``run`` (the loop calls it); the trackers
themselves are components (:class:`~sami_toolkit.core.components.Tracker`, hook ``register_trackers``).
"""

from __future__ import annotations

from typing import Any


def missing_library(tracker: Any) -> tuple[str, str] | None:
    """``(problem, hint)`` when a tracker's library is not installed (checked at preflight, before sampling)."""
    missing = tracker.missing_requirements()
    if not missing:
        return None
    return (f"tracker '{tracker.name}' needs {', '.join(missing)}, which is not installed",
            tracker.install or f"pip install {' '.join(missing)}")
