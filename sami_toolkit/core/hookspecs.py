"""The hook specifications of sami-kit (pluggy project name ``sami_kit``).

Every ``register_*`` hook receives a ``register(cls, aliases=())`` callback and registers component *classes*
(never instances): nothing heavy is built until a run asks for it, and ``sami-kit --help`` stays fast.
A plugin is any module with functions decorated by :data:`hookimpl` (re-exported as ``sami_toolkit.hookimpl``)
whose names match these specs; a misspelled hook name is an error (``check_pending``).

Example::

    from sami_toolkit import hookimpl

    @hookimpl
    def register_judges(register):
        from .judge import RubricJudge      # import heavy modules inside the hook
        register(RubricJudge, aliases=("rubric",))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    import click

#: pluggy project name shared by the specs below and every plugin's implementations.
PROJECT = "sami_kit"

#: marks the hook specifications below (sami-kit's own; plugins never need it).
hookspec = pluggy.HookspecMarker(PROJECT)

#: decorator for hook implementations in plugins: ``@hookimpl def register_judges(register): ...``.  Plugins
#: import it from the facade (``from sami_toolkit import hookimpl``), which re-exports this very object; it lives
#: here, in the lowest layer, so that the facade can offer it without importing anything else.
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callback passed to every ``register_*`` hook."""

    def __call__(self, cls: type, aliases: Sequence[str] = ()) -> None: ...


@hookspec
def register_principle_writers(register: Register) -> None:
    """Register :class:`~sami_toolkit.core.components.PrincipleWriter` classes (spec §5.1): they turn a task and
    principle names into a principle set (definitions and antitheses)."""


@hookspec
def register_samplers(register: Register) -> None:
    """Register :class:`~sami_toolkit.core.components.Sampler` classes: they generate one response per prompt
    with a given model (transformers ``generate``, vLLM, an API through litellm, ...)."""


@hookspec
def register_losses(register: Register) -> None:
    """Register :class:`~sami_toolkit.core.components.Loss` classes: SAMI loss variants over a ``[..., C, C]``
    score matrix (spec §1.3)."""


@hookspec
def register_judges(register: Register) -> None:
    """Register :class:`~sami_toolkit.core.components.Judge` classes: pairwise judges returning a verdict per item
    (``A``, ``B``, ``tie`` or ``failed``) with the raw judge text (spec §8.3)."""


@hookspec
def register_trainers(register: Register) -> None:
    """Register :class:`~sami_toolkit.core.components.Trainer` classes: engines that run the core's SAMI step
    (DeepSpeed, plain torch, ...)."""


@hookspec
def register_evaluators(register: Register) -> None:
    """Register :class:`~sami_toolkit.core.components.Evaluator` classes: per-checkpoint metrics such as MI
    (spec §1.6) or win rates (spec §8)."""


@hookspec
def register_query_sources(register: Register) -> None:
    """Register :class:`~sami_toolkit.core.components.QuerySource` classes: datasets of queries (HH-RLHF, TL;DR,
    local JSONL/CSV)."""


@hookspec
def register_trackers(register: Register) -> None:
    """Register :class:`~sami_toolkit.core.components.Tracker` classes: experiment trackers a run and ``eval
    compare`` report to (``report_to: [tensorboard, wandb]``): TensorBoard, Weights & Biases, Trackio, MLflow, ..."""


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add extra ``sami-kit`` subcommands to the click group ``cli`` (``@cli.command("name")``).

    Called once per invocation, when the command list is first needed, with a group that collects this
    invocation's plugin commands (so they never outlive it)."""


#: hook name -> component kind (the CLI noun), in the order they are documented.
COMPONENT_HOOKS: dict[str, str] = {
    "register_principle_writers": "principle-writers",
    "register_samplers": "samplers",
    "register_losses": "losses",
    "register_judges": "judges",
    "register_trainers": "trainers",
    "register_evaluators": "evaluators",
    "register_query_sources": "query-sources",
    "register_trackers": "trackers",
}


def singular(kind: str) -> str:
    """``"losses"`` -> ``"loss"``, ``"query-sources"`` -> ``"query-source"`` (for messages)."""
    return kind[:-2] if kind.endswith("sses") else kind[:-1]


ALL_HOOKS: tuple[str, ...] = (*COMPONENT_HOOKS, "register_commands")

RegisterCallback = Callable[..., Any]
