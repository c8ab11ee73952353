"""``sami-kit principles write``: placeholder until implemented."""

from __future__ import annotations

import click


@click.command("write")
def write() -> None:
    """(not implemented yet)"""
    raise click.UsageError("'sami-kit principles write' is not implemented yet")
