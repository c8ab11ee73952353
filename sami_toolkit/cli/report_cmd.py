"""``sami-kit report``: placeholder until implemented."""

from __future__ import annotations

import click


@click.command("report")
def report() -> None:
    """(not implemented yet)"""
    raise click.UsageError("'sami-kit report' is not implemented yet")
