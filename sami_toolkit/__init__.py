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
    "sami_loss": ("sami_toolkit.losses", "sami_loss"),
    "infonce_mi": ("sami_toolkit.losses", "infonce_mi"),
    "paper_mi": ("sami_toolkit.losses", "paper_mi"),
    "score_matrix": ("sami_toolkit.scoring", "score_matrix"),
    "get_component": ("sami_toolkit.registry", "get_component"),
    "get_registry": ("sami_toolkit.registry", "get_registry"),
    "Component": ("sami_toolkit.components", "Component"),
    "ComponentOptions": ("sami_toolkit.components", "ComponentOptions"),
    "PrincipleWriter": ("sami_toolkit.components", "PrincipleWriter"),
    "Sampler": ("sami_toolkit.components", "Sampler"),
    "Loss": ("sami_toolkit.components", "Loss"),
    "Judge": ("sami_toolkit.components", "Judge"),
    "Trainer": ("sami_toolkit.components", "Trainer"),
    "Evaluator": ("sami_toolkit.components", "Evaluator"),
    "QuerySource": ("sami_toolkit.components", "QuerySource"),
    "Query": ("sami_toolkit.components", "Query"),
    "JudgeItem": ("sami_toolkit.components", "JudgeItem"),
    "Judgment": ("sami_toolkit.components", "Judgment"),
    "WriterResult": ("sami_toolkit.components", "WriterResult"),
    "ExitCode": ("sami_toolkit.errors", "ExitCode"),
    "SamiKitError": ("sami_toolkit.errors", "SamiKitError"),
    "ConfigError": ("sami_toolkit.errors", "ConfigError"),
    "InfrastructureError": ("sami_toolkit.errors", "InfrastructureError"),
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
