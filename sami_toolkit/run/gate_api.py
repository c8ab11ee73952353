"""``sami_toolkit.run_gate(...)``: ``sami-kit eval compare`` for CI scripts that prefer Python (issue 18 §6) —
the same checks (preflight), the same outputs and the **same exit code**, returned instead of exiting.

Why a function of its own: :func:`~sami_toolkit.evaluation.compare.run_compare` computes and returns a result (and
raises on bad input), and :mod:`sami_toolkit.report.ci` renders it; a CI script wants one call that behaves like
the command: ``sys.exit(sami_toolkit.run_gate({...}).exit_code)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.evaluation.compare import CompareResult
    from sami_toolkit.evaluation.config import EvalConfig
    from sami_toolkit.plugins.registry import Registry


@dataclass
class GateOutcome:
    """What :func:`run_gate` returns: the exit code the CLI would end with, and what led to it."""

    exit_code: int
    result: "CompareResult | None" = None
    #: the one-line message of a configuration (2) or infrastructure (4) error; None when the gate ran
    error: str | None = None
    written: list[Path] = field(default_factory=list)

    @property
    def decision(self) -> str:
        return self.result.gate.decision if self.result is not None else "error"


def run_gate(config: "EvalConfig | Mapping[str, Any]", *, registry: "Registry | None" = None,
             write_outputs: bool = True, console: Any = None) -> GateOutcome:
    """Validate, preflight, compare, write the configured outputs and return the exit code: 0 pass, 1 regression,
    3 inconclusive, 2 configuration error, 4 judge / infrastructure / budget error (docs/ci-gate.md). A
    :class:`~sami_toolkit.core.errors.SamiKitError` becomes ``GateOutcome(exit_code=2 or 4, error=message)``;
    any other exception is a bug and propagates. ``console`` (a rich Console) also prints the CLI's summary."""
    from sami_toolkit.core.config import validate_model
    from sami_toolkit.core.errors import SamiKitError
    from sami_toolkit.evaluation.compare import run_compare
    from sami_toolkit.evaluation.config import EvalConfig

    try:
        cfg = config if isinstance(config, EvalConfig) else validate_model(EvalConfig, dict(config))
        if registry is None:
            from sami_toolkit.plugins.registry import load_plugins

            registry = load_plugins()
        from sami_toolkit.run.preflight import preflight

        preflight(cfg, registry)
        result = run_compare(cfg, registry=registry)
        written: list[Path] = []
        if write_outputs:
            from sami_toolkit.report.ci import write_outputs as write

            written = write(result, cfg)
        if console is not None:
            from sami_toolkit.report.ci import print_summary

            print_summary(result, console)
    except SamiKitError as exc:
        return GateOutcome(exit_code=int(exc.exit_code), error=str(exc))
    return GateOutcome(exit_code=result.exit_code, result=result, written=written)
