"""``sami-kit principles``: placeholder until implemented."""

from __future__ import annotations

import click


@click.command("principles")
def principles() -> None:
    """(not implemented yet)"""
    raise click.UsageError("'sami-kit principles' is not implemented yet")
