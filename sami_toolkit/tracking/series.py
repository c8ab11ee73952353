"""The names of what a run logs to its trackers, and the flattening of the run's records into them.

One vocabulary for every tracker, so a TensorBoard scalar, a W&B chart and an MLflow metric of the same number have
the same name (docs/tracking.md lists them):

* per optimizer step (``train.json``'s records): ``train/loss``, ``train/loss_row`` and ``train/loss_col`` (the
  L_row and L_col parts of spec §1.3, when the trainer reports them), ``train/kl``, ``train/lr``,
  ``train/grad_norm``, ``train/tokens``, ``train/tokens_per_s``, ``train/seconds``, and ``iteration``;
* per iteration: ``pairs/queries``, ``pairs/kept``, ``pairs/dropped`` and ``pairs/dropped/<reason>`` (spec §2.7,
  ``filter.json``); ``eval/<key>`` for every number an evaluator wrote to ``metrics.json``, under the key of
  :mod:`sami_toolkit.core.metrics` (``eval/mi_infonce_constitutions``, its ``_sem``, ``eval/win_rate_vs_base``
  and its ``_ci_low``/``_ci_high``, ``eval/judge_health_vs_base/failure_rate``...); ``time/<stage>_s`` for each
  stage that ran; and ``iteration``.

Texts (the training precision, the MI scorer, notes, judge warnings) are not series: they go to one
``iterations/notes`` table row each (``iteration``, ``key``, ``value``).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

#: keys of metrics.json that are the loop's bookkeeping, logged under their own names (or not at all)
_LOOP_KEYS = frozenset({"iteration", "steps", "pairs_kept", "pairs_dropped", "dropped_by_reason", "train_loss_last"})
#: the per-step record's keys that are not series
_STEP_SKIP = frozenset({"step"})


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    """``(name, leaf)`` for every leaf under ``value``: mappings nest with ``/``; a list of texts is one text."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from flatten(f"{prefix}/{key}", item)
    elif isinstance(value, (list, tuple)):
        texts = [str(v) for v in value if v is not None]
        if texts and not all(_number(v) is not None for v in value):
            yield prefix, "; ".join(texts)
    elif value is not None:
        yield prefix, value


def step_series(record: Mapping[str, Any], *, iteration: int) -> dict[str, float]:
    """The series of one per-step record of a trainer (:func:`sami_toolkit.training.request.step_metrics`)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        number = _number(value)
        if key not in _STEP_SKIP and number is not None:
            out[f"train/{key}"] = number
    tokens, seconds = _number(record.get("tokens")), _number(record.get("seconds"))
    if tokens is not None and seconds:
        out["train/tokens_per_s"] = tokens / seconds
    out["iteration"] = float(iteration)
    return out


def iteration_series(t: int, metrics: Mapping[str, Any], *, pairs: Mapping[str, Any] | None = None,
                     durations: Mapping[str, float] | None = None,
                     texts: Mapping[str, Any] | None = None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The numbers and the notes rows of iteration ``t``.

    ``metrics`` is its metrics.json, ``pairs`` its filter.json, ``durations`` the seconds of each stage that ran,
    ``texts`` extra texts such as ``{"train/precision": "bf16-mixed"}``."""
    numbers: dict[str, float] = {"iteration": float(t)}
    notes: list[dict[str, Any]] = []

    def add(name: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            numbers[name] = number
        elif isinstance(value, str) and value:
            notes.append({"iteration": t, "key": name, "value": value})

    for key, value in (pairs or {}).items():
        if key == "dropped_by_reason":
            for reason, count in (value or {}).items():
                add(f"pairs/dropped/{reason}", count)
        else:
            add(f"pairs/{key}", value)
    for key, value in metrics.items():
        if key in _LOOP_KEYS:
            continue
        for name, leaf in flatten(f"eval/{key}", value):
            add(name, leaf)
    for stage, seconds in (durations or {}).items():
        add(f"time/{stage}_s", seconds)
    for name, value in (texts or {}).items():
        add(name, value)
    return numbers, notes
