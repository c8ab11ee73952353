"""``sami-kit eval``: placeholder until implemented."""

from __future__ import annotations

import click


@click.command("eval")
def eval_group() -> None:
    """(not implemented yet)"""
    raise click.UsageError("'sami-kit eval' is not implemented yet")
