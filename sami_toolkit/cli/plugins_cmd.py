"""``sami-kit plugins``: what loaded, from where, with which hooks, and what failed."""

from __future__ import annotations

import click


@click.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (name, version, hooks, error).")
def plugins(show_all: bool, as_json: bool) -> None:
    """List installed plugins (add --all for the built-ins)."""
    from sami_toolkit.cli.session import current_plugin_system

    records = [r for r in current_plugin_system().records if show_all or not r.builtin]
    if as_json:
        from sami_toolkit.cli.common import print_json

        print_json([r.as_json() for r in records])
        return
    if not records:
        click.echo("No plugins installed (use --all to see the built-ins).")
        return
    for r in records:
        status = f"ERROR: {r.error}" if r.error else ", ".join(r.hooks) or "(no hooks)"
        click.echo(f"{r.name} {r.version or ''}".rstrip() + f"\n  {status}")
