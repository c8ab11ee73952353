"""``sami-kit config``: placeholder until implemented."""

from __future__ import annotations

import click


@click.command("config")
def config() -> None:
    """(not implemented yet)"""
    raise click.UsageError("'sami-kit config' is not implemented yet")
