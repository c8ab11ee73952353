"""What an evaluator is given for one checkpoint: :class:`EvalContext`.

Its own module so that the base class (:class:`sami_toolkit.core.components.Evaluator`), the loop, the CLI and
plugin evaluators can all name it without importing any evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.core.components import Judge, Sampler
    from sami_toolkit.core.records import Query
    from sami_toolkit.text.principles import PrincipleSet
    from sami_toolkit.text.prompts import PromptTemplates


@dataclass
class EvalContext:
    """Everything an evaluator needs for one checkpoint."""

    model: str  #: the checkpoint being evaluated (π_η): a model reference
    base_model: str | None  #: π_BASE (win rates are against it; None skips that comparison)
    queries: list["Query"]
    principle_set: "PrincipleSet | None"
    templates: "PromptTemplates | None"
    task: str
    sampler: "Sampler"
    judge: "Judge | None"
    out_dir: Path
    seed: int
    baseline_model: str | None = None  #: optional second comparator, e.g. an instruct model
    options: dict[str, Any] = field(default_factory=dict)  #: free-form: cache_dir, progress (callable) ...


def progress_label(context: EvalContext, text: str) -> str:
    """A progress-bar label naming the checkpoint, so a run's bars can be told apart: ``iteration 2`` for a run's
    ``iterations/2/checkpoint``, else the last part of the model reference."""
    path = Path(str(context.model))
    if path.name == "checkpoint" and path.parent.name.isdigit():
        return f"{text} [iteration {path.parent.name}]"
    return f"{text} [{path.name}]"
