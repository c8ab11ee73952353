"""A decorator that turns sami-kit errors into one ``Error: ...`` line and their exit code inside a command.

``sami_toolkit.cli.main`` already does this for the console script, but click's ``CliRunner`` (tests, and
anyone embedding the CLI) invokes commands without ``main``; decorating a command makes both paths behave the same.
Only click and the standard library are imported here.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def handle_user_errors(func: F) -> F:
    """Catch :class:`~sami_toolkit.errors.SamiKitError`, print ``Error: <message>`` on stderr, exit with its code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import SamiKitError

        try:
            return func(*args, **kwargs)
        except SamiKitError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(int(exc.exit_code))

    return wrapper  # type: ignore[return-value]
