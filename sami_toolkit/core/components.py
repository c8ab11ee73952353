"""Component base classes: one per plugin hook.

A component is a class with a ``name``, a one-line ``description`` and a pydantic ``Options`` model
(``extra="forbid"``, every field described) that ``sami-kit <kind> show NAME`` prints.  Instances are built with
:meth:`Component.from_options`, which turns a validation error into a :class:`ConfigError` naming the field.

The plain records the base classes take and return (:class:`Query`, :class:`JudgeItem`, :class:`Judgment`,
:class:`WriterResult`) live in :mod:`sami_toolkit.core.records`.  Heavy libraries (torch, transformers, litellm,
deepspeed, vllm) are imported inside methods, never at module level.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.hookspecs import singular
from sami_toolkit.core.records import JudgeItem, Judgment, Query, TrackedRun, WriterResult

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from sami_toolkit.evaluation.context import EvalContext
    from sami_toolkit.training.request import TrainRequest, TrainResult


#: a progress callback a component calls with how many items just finished (``progress(1)``, ``progress(len(chunk))``)
ProgressCallback = Callable[[int], None]


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
        """Build the component from a mapping, reporting invalid options as a :class:`ConfigError`.

        The message has one ``field.path: problem`` line per invalid option (``where`` is the path of the options
        in the config, e.g. ``sampler.options``), and points at ``sami-kit <kind> show NAME``, the command that
        lists this component's options — not at ``sami-kit config schema``, which cannot know a plugin's options."""
        if isinstance(options, ComponentOptions):
            return cls(options)
        try:
            parsed = cls.Options.model_validate(dict(options or {}))
        except ValidationError as exc:
            from sami_toolkit.core.config import format_validation_error

            prefix = where or f"{cls.kind}.{cls.name}.options"
            show = f"sami-kit {cls.kind} show {cls.name}"
            lines = format_validation_error(exc, prefix=prefix, model=cls.Options,
                                            keys_help=f"`{show}` lists every option")
            raise ConfigError(f"invalid options for {singular(cls.kind)} '{cls.name}':\n{lines}",
                              hint=f"`{show}` lists the options of {singular(cls.kind)} '{cls.name}' with their "
                                   "types and defaults") from None
        return cls(parsed)

    @classmethod
    def summary(cls) -> str:
        if cls.description:
            return cls.description
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


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
    def generate(self, model: str, prompts: Sequence[str], *, progress: ProgressCallback | None = None) -> list[str]:
        """Return one completion (the continuation only, not the prompt) per prompt, in order.

        ``progress``, when given, is called with the number of prompts just finished, as they finish."""

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
    def judge(self, items: Sequence[JudgeItem], *, progress: ProgressCallback | None = None) -> list[Judgment]:
        """Return one :class:`Judgment` per item, in order. Failures are returned as ``verdict="failed"``.

        ``progress``, when given, is called with the number of items just judged, as they finish."""

    @property
    def model_name(self) -> str:
        """The judging model's name (used for the shared-model-family warning and the cache key)."""
        return getattr(self.options, "model", self.name)


class Trainer(Component, ABC):
    """An engine that trains a model with the core's SAMI step (scoring + loss); it owns only the engine."""

    kind: ClassVar[str] = "trainers"

    @abstractmethod
    def train(self, request: "TrainRequest") -> "TrainResult":
        """Run ``request.steps`` optimizer steps from the base weights and save a safetensors checkpoint.

        ``request`` carries the resolved loss (``request.loss``): a trainer never looks components up."""


class Evaluator(Component, ABC):
    """Computes metrics for one checkpoint (MI, win rates...)."""

    kind: ClassVar[str] = "evaluators"
    #: True if :meth:`evaluate` needs ``context.judge``: the run preflight then refuses a config without ``judge``
    #: before any model loads, instead of the evaluator failing after an iteration of work
    needs_judge: ClassVar[bool] = False

    @abstractmethod
    def evaluate(self, context: "EvalContext") -> dict[str, Any]:
        """Return a JSON-serialisable mapping of metric name to value for ``context`` (one checkpoint); the
        names come from the vocabulary in :mod:`sami_toolkit.core.metrics`."""


class QuerySource(Component, ABC):
    """A dataset of queries."""

    kind: ClassVar[str] = "query-sources"

    @abstractmethod
    def load(self) -> list[Query]:
        """Return the queries, in a stable order."""


#: how a tracked job ended (``Tracker.finish``)
TrackerStatus = Literal["success", "failed", "interrupted"]


class Tracker(Component, ABC):
    """An experiment tracker a run (and ``eval compare``) reports to: TensorBoard, Weights & Biases, MLflow, ...

    :mod:`sami_toolkit.tracking` calls it, and makes the contract easy to implement: every call comes from one
    thread of the tracker's own (so a slow tracker never slows training), in order, on rank 0 only, with ``step``
    never decreasing and never repeated for the same values after a ``--resume``; the first exception any method
    raises is reported once and disables the tracker for the rest of the job, so methods need not catch anything.
    The tracker's library is imported inside the methods, never at module level."""

    kind: ClassVar[str] = "trackers"
    #: top-level modules the tracker imports; a missing one stops ``run`` at preflight (exit 2) with :attr:`install`
    requires: ClassVar[tuple[str, ...]] = ()
    #: the command that installs them (``pip install 'sami-kit[wandb]'``)
    install: ClassVar[str] = ""

    @abstractmethod
    def start(self, run: TrackedRun, config: Mapping[str, Any]) -> str | None:
        """Open (or, when ``run.resume_id`` is set, reopen) the tracker's run and record ``config`` (the resolved
        config, secrets redacted) as its parameters; return the id to reopen it with after a ``--resume``."""

    @abstractmethod
    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record numeric series at ``step`` (the global optimizer step; names such as ``train/loss``)."""

    @abstractmethod
    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]], *, step: int) -> None:
        """Record a table (rows with the same keys, values str or numbers) at ``step``."""

    @abstractmethod
    def log_artifact(self, path: Path, *, name: str | None = None) -> None:
        """Attach a file of the run directory (config.yaml, summary.md, report.html, ...) to the tracker's run."""

    @abstractmethod
    def finish(self, status: TrackerStatus) -> None:
        """Close the tracker's run, marking how the job ended."""

    @classmethod
    def missing_requirements(cls) -> list[str]:
        """The modules of :attr:`requires` that cannot be imported here (found without importing them)."""
        import importlib.util

        missing = []
        for module in cls.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(module)
        return missing


BASE_CLASSES: dict[str, type[Component]] = {
    cls.kind: cls for cls in (PrincipleWriter, Sampler, Loss, Judge, Trainer, Evaluator, QuerySource, Tracker)
}


def default_cache_dir() -> Path:
    """Where converted models and other caches live (``SAMI_KIT_CACHE`` or ``~/.cache/sami-kit``)."""
    import os

    return Path(os.environ.get("SAMI_KIT_CACHE", Path.home() / ".cache" / "sami-kit"))
