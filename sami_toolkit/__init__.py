"""sami-kit: align language models to a written constitution with SAMI and evaluate them with LLM judges.

The public API is light to import; torch-based functions (``sami_loss``, ``infonce_mi``, ``paper_mi``) are loaded
on first access so that ``import sami_toolkit`` and ``sami-kit --help`` never import torch.
"""

from __future__ import annotations

from typing import Any

import pluggy

__version__ = "0.1.0"

#: decorator for hook implementations in plugins: ``@hookimpl def register_judges(register): ...``
hookimpl = pluggy.HookimplMarker("sami_kit")

_LAZY = {
    "sami_loss": ("sami_toolkit.training.losses", "sami_loss"),
    "infonce_mi": ("sami_toolkit.training.losses", "infonce_mi"),
    "paper_mi": ("sami_toolkit.training.losses", "paper_mi"),
    "score_matrix": ("sami_toolkit.training.scoring", "score_matrix"),
    "get_component": ("sami_toolkit.plugins.registry", "get_component"),
    "get_registry": ("sami_toolkit.plugins.registry", "get_registry"),
    "Component": ("sami_toolkit.core.components", "Component"),
    "ComponentOptions": ("sami_toolkit.core.components", "ComponentOptions"),
    "PrincipleWriter": ("sami_toolkit.core.components", "PrincipleWriter"),
    "Sampler": ("sami_toolkit.core.components", "Sampler"),
    "Loss": ("sami_toolkit.core.components", "Loss"),
    "Judge": ("sami_toolkit.core.components", "Judge"),
    "Trainer": ("sami_toolkit.core.components", "Trainer"),
    "Evaluator": ("sami_toolkit.core.components", "Evaluator"),
    "QuerySource": ("sami_toolkit.core.components", "QuerySource"),
    "Query": ("sami_toolkit.core.components", "Query"),
    "JudgeItem": ("sami_toolkit.core.components", "JudgeItem"),
    "Judgment": ("sami_toolkit.core.components", "Judgment"),
    "WriterResult": ("sami_toolkit.core.components", "WriterResult"),
    "ExitCode": ("sami_toolkit.core.errors", "ExitCode"),
    "SamiKitError": ("sami_toolkit.core.errors", "SamiKitError"),
    "ConfigError": ("sami_toolkit.core.errors", "ConfigError"),
    "InfrastructureError": ("sami_toolkit.core.errors", "InfrastructureError"),
}

__all__ = ["__version__", "hookimpl", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sami_toolkit' has no attribute {name!r}")
