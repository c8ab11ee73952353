"""``sami-kit run``: placeholder until implemented."""

from __future__ import annotations

import click


@click.command("run")
def run() -> None:
    """(not implemented yet)"""
    raise click.UsageError("'sami-kit run' is not implemented yet")
