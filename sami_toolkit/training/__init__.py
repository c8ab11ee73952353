"""Everything a trainer plugin needs, in one import: ``import sami_toolkit.training as T``.

A trainer (the built-in ``torch`` one, ``sami_kit_deepspeed``, or yours) owns only its engine; the SAMI maths and
the shared plumbing live in this package so every engine makes the same update (docs/training.md has a skeleton):

=======================  ===============================================================================
``request``              :class:`TrainRequest` (in, with the resolved loss) / :class:`TrainResult` (out),
                         :func:`step_metrics` (one record of ``TrainResult.metrics``)
``settings``             :class:`TrainSettings`, :class:`LoraSettings` (the run config's ``train:``)
``pairs``                :func:`load_pairs`, :func:`training_batches` (the data and its order, spec §2.1)
``precision``            :func:`resolve_device`, :func:`resolve_precision`, :func:`weight_dtype`,
                         :func:`autocast_context` (spec §10.7)
``policy``               :func:`seed_everything`, :func:`load_policy`, :func:`load_reference`,
                         :func:`apply_lora`, :func:`is_peft_model` (fresh from π_BASE, spec §2.1)
``optim``                :func:`build_optimizer`, :func:`build_scheduler`, :func:`lr_multiplier`,
                         :func:`grad_norm`, :func:`apply_update` (spec §4.2, §10.5)
``step``                 :func:`sami_step`, :func:`count_tokens` (loss + KL, exact-mean accumulation, §10.4)
``checkpoint``           :func:`save_checkpoint` (atomic, safetensors, LoRA merged or adapter)
``progress``             :class:`StepProgress` (the caller's callback, or a progress bar)
``scoring``              :func:`score_matrix`, :class:`ScoringOptions` (the C×C matrix, spec §1.2, §1.4)
``losses``               the SAMI loss maths and KL (imports torch; the Loss components wrap it)
=======================  ===============================================================================

The names are loaded on first access (module ``__getattr__``, like the root ``sami_toolkit``): importing this
package, which happens whenever a run config is validated, imports neither torch nor any submodule.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "TrainRequest": "request", "TrainResult": "request", "step_metrics": "request",
    "TrainSettings": "settings", "LoraSettings": "settings",
    "load_pairs": "pairs", "training_batches": "pairs",
    "resolve_device": "precision", "resolve_precision": "precision", "weight_dtype": "precision",
    "autocast_context": "precision",
    "seed_everything": "policy", "load_policy": "policy", "load_reference": "policy", "apply_lora": "policy",
    "is_peft_model": "policy",
    "build_optimizer": "optim", "build_scheduler": "optim", "lr_multiplier": "optim", "grad_norm": "optim",
    "apply_update": "optim",
    "sami_step": "step", "count_tokens": "step",
    "save_checkpoint": "checkpoint",
    "StepProgress": "progress",
    "score_matrix": "scoring", "score_token_ids": "scoring", "ScoringOptions": "scoring", "ScoreOutput": "scoring",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
