"""Exit codes and the exceptions that carry them (design.md §6).

Every error a user can cause is raised as a :class:`SamiKitError` subclass; the CLI prints its message on one
line (no traceback) and exits with its ``exit_code``.  Keeping the codes in one enum means the docs, the CLI and
CI gates can never disagree about what ``3`` means.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The documented exit codes of every ``sami-kit`` command."""

    OK = 0  #: success, or a gate passed
    GATE_FAILED = 1  #: a regression gate failed
    USAGE = 2  #: usage or configuration error
    INCONCLUSIVE = 3  #: a regression gate could not decide
    INFRASTRUCTURE = 4  #: judge/model/API unreachable, budget exhausted, a backend failed


class SamiKitError(Exception):
    """Base class for errors shown to users as one clear message."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(SamiKitError):
    """Bad configuration, options or command-line input (exit 2)."""

    exit_code = ExitCode.USAGE


class UnknownComponentError(ConfigError):
    """A component name that no installed plugin registered (exit 2)."""


class PluginError(ConfigError):
    """A plugin could not be loaded or registered something invalid (exit 2)."""


class InfrastructureError(SamiKitError):
    """A backend, model file, API or budget failed (exit 4)."""

    exit_code = ExitCode.INFRASTRUCTURE


class BudgetExceeded(InfrastructureError):
    """The configured cost cap would be crossed (exit 4)."""
