"""``sami-kit <kind> list`` and ``sami-kit <kind> show NAME`` for every component kind."""

from __future__ import annotations

import click


def kind_group(kind: str) -> click.Group:
    """Build the ``list``/``show`` group for one component kind (``samplers``, ``judges``...)."""

    @click.group(kind, help=f"Inspect the registered {kind.replace('-', ' ')}.")
    def group() -> None:
        pass

    @group.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def list_cmd(as_json: bool) -> None:
        """List the registered components of this kind."""
        from sami_toolkit.cli.session import current_registry

        registry = current_registry()
        rows = []
        for name in registry.names(kind):
            entry = registry.entry(kind, name)
            rows.append({"name": name, "aliases": list(entry.aliases), "plugin": entry.plugin,
                         "description": entry.cls.summary()})
        if as_json:
            from sami_toolkit.cli.common import print_json

            print_json(rows)
            return
        from rich.table import Table

        from sami_toolkit.cli.common import stdout_console

        table = Table(title=kind)
        for col in ("name", "aliases", "plugin", "description"):
            table.add_column(col)
        for row in rows:
            table.add_row(row["name"], ", ".join(row["aliases"]), row["plugin"], row["description"])
        stdout_console().print(table)

    @group.command("show")
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Print the Options JSON schema.")
    def show_cmd(name: str, as_json: bool) -> None:
        """Show a component's description and its options (with descriptions and defaults)."""
        from sami_toolkit.cli.session import current_registry
        from sami_toolkit.core.hookspecs import singular

        entry = current_registry().entry(kind, name)
        schema = entry.cls.Options.model_json_schema()
        if as_json:
            from sami_toolkit.cli.common import print_json

            print_json({"name": entry.cls.name, "plugin": entry.plugin, "description": entry.cls.summary(),
                        "options": schema})
            return
        click.echo(f"{entry.cls.name} ({singular(kind)}, plugin {entry.plugin})")
        if entry.aliases:
            click.echo(f"aliases: {', '.join(entry.aliases)}")
        click.echo(entry.cls.summary())
        props = schema.get("properties", {})
        if not props:
            click.echo("options: none")
            return
        click.echo("options:")
        for field_name, prop in props.items():
            typ = prop.get("type") or " | ".join(str(a.get("type", a.get("$ref", "?"))) for a in prop.get("anyOf", []))
            default = prop.get("default", "(required)" if field_name in schema.get("required", []) else None)
            click.echo(f"  {field_name} ({typ}, default {default!r}): {prop.get('description', '')}")

    return group
