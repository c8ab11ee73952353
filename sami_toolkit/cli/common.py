"""Helpers shared by the CLI command modules (kept light: click and stdlib at import time)."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click

from sami_toolkit.core.consoles import console


def stderr_console() -> Any:
    """A rich console on stderr (humans get tables and progress there; machines get ``--json`` on stdout)."""
    return console(stderr=True)


def stdout_console() -> Any:
    return console(stderr=False)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def override_option(func: Callable | None = None, *, help: str | None = None) -> Callable:
    """``-o key.sub=value`` options (repeatable), typed by YAML rules: numbers, booleans, lists.

    ``@override_option`` documents run-config keys; a command whose ``-o`` sets other keys (an eval config, an
    evaluator's options) says so with ``@override_option(help=...)`` and an example of its own."""
    text = help or "Override a config value, e.g. -o train.lr=5e-5 -o sampler.options.stop=[\"###\"]."
    decorator = click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE", help=text)
    return decorator(func) if func is not None else decorator


def exit_with(code: int) -> None:
    sys.exit(int(code))
