"""Component base classes: one per plugin hook.

A component is a class with a ``name``, a one-line ``description`` and a pydantic ``Options`` model
(``extra="forbid"``, every field described) that ``sami-kit <kind> show NAME`` prints.  Instances are built with
:meth:`Component.from_options`, which turns a validation error into a :class:`ConfigError` naming the field.

Heavy libraries (torch, transformers, litellm, deepspeed, vllm) are imported inside methods, never at module level.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.hookspecs import singular

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from sami_toolkit.text.principles import PrincipleSet


class ComponentOptions(BaseModel):
    """Base for every component's ``Options``: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Component:
    """Common behaviour of every registered component."""

    #: kind noun used by the CLI (``samplers``, ``judges``...); set by each base class below.
    kind: ClassVar[str] = "components"
    #: the registered name; required on concrete classes.
    name: ClassVar[str] = ""
    #: one line shown by ``sami-kit <kind> list``; defaults to the docstring's first line.
    description: ClassVar[str] = ""

    class Options(ComponentOptions):
        pass

    def __init__(self, options: ComponentOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | ComponentOptions | None = None, *, where: str = "") -> "Component":
        """Build the component from a mapping, reporting invalid options as a :class:`ConfigError`."""
        if isinstance(options, ComponentOptions):
            return cls(options)
        try:
            parsed = cls.Options.model_validate(dict(options or {}))
        except ValidationError as exc:
            from sami_toolkit.core.config import format_validation_error

            prefix = where or f"{cls.kind}.{cls.name}.options"
            raise ConfigError(
                f"invalid options for {singular(cls.kind)} '{cls.name}':\n" + format_validation_error(exc, prefix=prefix)
            ) from None
        return cls(parsed)

    @classmethod
    def summary(cls) -> str:
        if cls.description:
            return cls.description
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


# --------------------------------------------------------------------------------------------------------------
# Plain data passed between components (dataclasses: cheap to import, easy to serialise with asdict).


@dataclass
class Query:
    """One query of a prompt set: ``text`` is what fills the task template's ``{question}`` slot's body
    (e.g. the post for TL;DR, the first human turn for HH-RLHF)."""

    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class JudgeItem:
    """One pairwise comparison: which of ``response_a`` / ``response_b`` follows ``constitution`` better."""

    id: str
    query: str
    constitution: str
    response_a: str
    response_b: str
    task: str = "generic"


Verdict = Literal["A", "B", "tie", "failed"]


@dataclass
class Judgment:
    """A judge's answer for one :class:`JudgeItem`. ``failed`` is never a verdict or a tie (spec §8.4b)."""

    id: str
    verdict: Verdict
    raw: str = ""
    error: str | None = None
    cost: float = 0.0
    cached: bool = False


@dataclass
class WriterResult:
    """What a principle writer returns: the parsed set and the model's raw answer (kept beside it)."""

    principle_set: "PrincipleSet"
    raw: str


# --------------------------------------------------------------------------------------------------------------
# The base classes, one per hook.


class PrincipleWriter(Component, ABC):
    """Writes principles (definitions and antitheses) for a task with the seed prompt of spec §5.1."""

    kind: ClassVar[str] = "principle-writers"

    @abstractmethod
    def write(self, task: str, principles: Sequence[str]) -> WriterResult:
        """Return a validated principle set for ``task`` with one entry per name in ``principles``."""


class Sampler(Component, ABC):
    """Generates one response per prompt with a model (a hub id, a local directory or a ``.gguf`` file)."""

    kind: ClassVar[str] = "samplers"

    @abstractmethod
    def generate(self, model: str, prompts: Sequence[str], *, progress: Any = None) -> list[str]:
        """Return one completion (the continuation only, not the prompt) per prompt, in order.

        ``progress`` is an optional callable ``progress(n_done)`` invoked as items finish."""

    def close(self) -> None:
        """Release the loaded model (GPU memory); called between iterations."""


class Loss(Component, ABC):
    """A SAMI loss over a score matrix ``S`` of shape ``[..., C, C]`` (rows = constitutions, columns =
    responses, spec §1.2); returns the mean over the leading dimensions."""

    kind: ClassVar[str] = "losses"

    @abstractmethod
    def __call__(self, scores: "torch.Tensor") -> "torch.Tensor":
        """Return a scalar loss tensor."""


class Judge(Component, ABC):
    """A pairwise judge (spec §8.3)."""

    kind: ClassVar[str] = "judges"

    @abstractmethod
    def judge(self, items: Sequence[JudgeItem], *, progress: Any = None) -> list[Judgment]:
        """Return one :class:`Judgment` per item, in order. Failures are returned as ``verdict="failed"``."""

    @property
    def model_name(self) -> str:
        """The judging model's name (used for the shared-model-family warning and the cache key)."""
        return getattr(self.options, "model", self.name)


class Trainer(Component, ABC):
    """An engine that trains a model with the core's SAMI step (scoring + loss); it owns only the engine."""

    kind: ClassVar[str] = "trainers"

    @abstractmethod
    def train(self, request: Any) -> Any:
        """Run ``request.steps`` optimizer steps from the base weights and save a safetensors checkpoint.

        ``request`` is a :class:`sami_toolkit.training.step.TrainRequest`; returns a
        :class:`sami_toolkit.training.step.TrainResult`."""


class Evaluator(Component, ABC):
    """Computes metrics for one checkpoint (MI, win rates...)."""

    kind: ClassVar[str] = "evaluators"

    @abstractmethod
    def evaluate(self, context: Any) -> dict[str, Any]:
        """Return a JSON-serialisable mapping of metric name to value for ``context``
        (a :class:`sami_toolkit.evaluation.evaluators.EvalContext`)."""


class QuerySource(Component, ABC):
    """A dataset of queries."""

    kind: ClassVar[str] = "query-sources"

    @abstractmethod
    def load(self) -> list[Query]:
        """Return the queries, in a stable order."""


BASE_CLASSES: dict[str, type[Component]] = {
    cls.kind: cls for cls in (PrincipleWriter, Sampler, Loss, Judge, Trainer, Evaluator, QuerySource)
}


def default_cache_dir() -> Path:
    """Where converted models and other caches live (``SAMI_KIT_CACHE`` or ``~/.cache/sami-kit``)."""
    import os

    return Path(os.environ.get("SAMI_KIT_CACHE", Path.home() / ".cache" / "sami-kit"))
