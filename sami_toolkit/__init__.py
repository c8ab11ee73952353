"""sami-kit: align language models to a written constitution with SAMI and evaluate them with LLM judges.

This module is the public API (the *facade*): what plugins and users import, re-exported from the layered
subpackages (docs/architecture.md).  Only :mod:`sami_toolkit.core.hookspecs` and :mod:`sami_toolkit.core.version`
are imported eagerly; every other name is loaded on first access (module ``__getattr__``), so ``import sami_toolkit``
and ``sami-kit --help`` never import torch, and a plugin module that only needs ``hookimpl`` stays light.

Modules *inside* the package never import this facade (it re-exports upper layers); they import the defining
module instead.  Plugins, scripts and notebooks use it::

    from sami_toolkit import get_component, load_plugins

    registry = load_plugins()                       # built-ins + installed plugins, built once
    judge = registry.create("judges", "litellm", {"model": "gpt-4o"})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from sami_toolkit.core.hookspecs import hookimpl
from sami_toolkit.core.version import __version__

if TYPE_CHECKING:  # pragma: no cover - typing only
    from sami_toolkit.plugins.registry import Registry

#: public name -> (defining module, attribute), imported on first access.
_LAZY: dict[str, tuple[str, str]] = {
    # component base classes and their options
    "Component": ("sami_toolkit.core.components", "Component"),
    "ComponentOptions": ("sami_toolkit.core.components", "ComponentOptions"),
    "PrincipleWriter": ("sami_toolkit.core.components", "PrincipleWriter"),
    "Sampler": ("sami_toolkit.core.components", "Sampler"),
    "Loss": ("sami_toolkit.core.components", "Loss"),
    "Judge": ("sami_toolkit.core.components", "Judge"),
    "Trainer": ("sami_toolkit.core.components", "Trainer"),
    "Evaluator": ("sami_toolkit.core.components", "Evaluator"),
    "QuerySource": ("sami_toolkit.core.components", "QuerySource"),
    "Tracker": ("sami_toolkit.core.components", "Tracker"),
    # records passed to and returned by components
    "Query": ("sami_toolkit.core.records", "Query"),
    "JudgeItem": ("sami_toolkit.core.records", "JudgeItem"),
    "Judgment": ("sami_toolkit.core.records", "Judgment"),
    "WriterResult": ("sami_toolkit.core.records", "WriterResult"),
    "TrackedRun": ("sami_toolkit.core.records", "TrackedRun"),
    "TrainRequest": ("sami_toolkit.training.request", "TrainRequest"),
    "TrainResult": ("sami_toolkit.training.request", "TrainResult"),
    "EvalContext": ("sami_toolkit.evaluation.context", "EvalContext"),
    # errors and exit codes
    "ExitCode": ("sami_toolkit.core.errors", "ExitCode"),
    "SamiKitError": ("sami_toolkit.core.errors", "SamiKitError"),
    "ConfigError": ("sami_toolkit.core.errors", "ConfigError"),
    "UnknownComponentError": ("sami_toolkit.core.errors", "UnknownComponentError"),
    "PluginError": ("sami_toolkit.core.errors", "PluginError"),
    "InfrastructureError": ("sami_toolkit.core.errors", "InfrastructureError"),
    "BudgetExceeded": ("sami_toolkit.core.errors", "BudgetExceeded"),
    # secrets: mask every key the process may send before recording a text (issue 14 §4)
    "scrub": ("sami_toolkit.core.secrets", "scrub"),
    "Scrubber": ("sami_toolkit.core.secrets", "Scrubber"),
    "remember_secret": ("sami_toolkit.core.secrets", "remember_secret"),
    # plugins
    "PluginSystem": ("sami_toolkit.plugins.loading", "PluginSystem"),
    "Registry": ("sami_toolkit.plugins.registry", "Registry"),
    "load_plugins": ("sami_toolkit.plugins.registry", "load_plugins"),
    # the SAMI objective (spec §1.3, §1.6) and scoring
    "sami_loss": ("sami_toolkit.training.losses", "sami_loss"),
    "infonce_mi": ("sami_toolkit.training.losses", "infonce_mi"),
    "paper_mi": ("sami_toolkit.training.losses", "paper_mi"),
    "score_matrix": ("sami_toolkit.training.scoring", "score_matrix"),
    # running and evaluating
    "RunConfig": ("sami_toolkit.run.config", "RunConfig"),
    "run_sami": ("sami_toolkit.run.loop", "run_sami"),
    "EvalConfig": ("sami_toolkit.evaluation.config", "EvalConfig"),
    "run_compare": ("sami_toolkit.evaluation.compare", "run_compare"),
    "compute_stats": ("sami_toolkit.evaluation.stats", "compute_stats"),
    "gate": ("sami_toolkit.evaluation.stats", "gate"),
    "load_items": ("sami_toolkit.evaluation.stats", "load_items"),
    "run_gate": ("sami_toolkit.run.gate_api", "run_gate"),
    "GateOutcome": ("sami_toolkit.run.gate_api", "GateOutcome"),
    "CompareResult": ("sami_toolkit.evaluation.compare", "CompareResult"),
    # the statistics of issue 18: sequential gate, style control, judge validity, multiple testing, rankings
    "SequentialDesign": ("sami_toolkit.evaluation.stats.sequential", "SequentialDesign"),
    "evaluate_look": ("sami_toolkit.evaluation.stats.sequential", "evaluate_look"),
    "simulate_sequential": ("sami_toolkit.evaluation.stats.sequential", "simulate"),
    "style_features": ("sami_toolkit.evaluation.stats.style", "style_features"),
    "cohen_kappa": ("sami_toolkit.evaluation.stats.agreement", "cohen_kappa"),
    "judge_agreement": ("sami_toolkit.evaluation.stats.agreement", "agreement"),
    "holm_adjust": ("sami_toolkit.evaluation.stats.multiple", "holm_adjust"),
    "rank_against_baseline": ("sami_toolkit.evaluation.stats.bradley_terry", "rank_against_baseline"),
    "load_history": ("sami_toolkit.evaluation.history", "load_history"),
}

__all__ = ["__version__", "hookimpl", "get_component", *_LAZY]


def get_component(kind: str, name: str, options: Mapping[str, Any] | None = None, *,
                  registry: "Registry | None" = None, where: str = "") -> Any:
    """Instantiate the component ``name`` of ``kind`` (``"judges"``, ``"samplers"``, ...) with ``options``.

    Options are validated (a wrong key or type raises ConfigError naming the field).  Without ``registry`` the
    plugins are loaded afresh for this call; pass one from :func:`load_plugins` to build several components
    from the same set of plugins (or from plugins registered in code)."""
    if registry is None:
        from sami_toolkit.plugins.registry import load_plugins

        registry = load_plugins()
    return registry.create(kind, name, options, where=where)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sami_toolkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
