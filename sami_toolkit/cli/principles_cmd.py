"""``sami-kit principles list | show | write``: inspect the shipped principle sets and your own YAML files.

Only click and the standard library are imported at module level (the CLI must start fast); pydantic, yaml and
rich are imported inside the commands.
"""

from __future__ import annotations

from typing import Any

import click

from sami_toolkit.cli.principles_write_cmd import write


@click.group("principles")
def principles() -> None:
    """Inspect principle sets (spec §6) and write new ones.

    A set is named by a built-in name (see `sami-kit principles list`) or a path to a YAML file.
    """


principles.add_command(write)


def _split_names(value: str | None) -> list[str] | None:
    return [n.strip() for n in value.split(",") if n.strip()] if value else None


@principles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
def list_cmd(as_json: bool) -> None:
    """List the principle sets shipped with sami-kit."""
    from sami_toolkit.text.principles import builtin_set_names, load_principle_set

    rows = []
    for name in builtin_set_names():
        pset = load_principle_set(name)
        rows.append({"name": pset.name, "task": pset.task, "writer": pset.writer,
                     "principles": [p.name for p in pset.principles], "source": pset.source})
    if as_json:
        from sami_toolkit.cli.common import print_json

        print_json(rows)
        return
    from rich.table import Table

    from sami_toolkit.cli.common import stdout_console

    table = Table(title="principle sets")
    for col in ("name", "task", "writer", "principles", "source"):
        table.add_column(col, overflow="fold")
    for row in rows:
        names = row["principles"]
        shown = ", ".join(names) if len(names) <= 4 else f"{len(names)}: {', '.join(names[:3])}, ..."
        table.add_row(row["name"], row["task"], row["writer"], shown, row["source"])
    stdout_console().print(table)


@principles.command("show")
@click.argument("name_or_path")
@click.option("--constitutions", "show_constitutions", is_flag=True,
              help="Also print all 2^k constitutions with their labels, in the paper's table order.")
@click.option("--principles", "principle_names", metavar="A,B",
              help="Only these principles (comma-separated), e.g. for --constitutions on a large set.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def show_cmd(name_or_path: str, show_constitutions: bool, principle_names: str | None, as_json: bool) -> None:
    """Show a principle set: its principles with definitions and antitheses."""
    from sami_toolkit.text.constitutions import all_constitutions
    from sami_toolkit.text.principles import load_principle_set

    pset = load_principle_set(name_or_path)
    names = _split_names(principle_names)
    selected = pset.subset(names)
    constitutions = all_constitutions(pset, [p.name for p in selected]) if show_constitutions else []
    if as_json:
        from sami_toolkit.cli.common import print_json

        data: dict[str, Any] = pset.model_dump()
        if names is not None:
            data["principles"] = [p.model_dump() for p in selected]
        if show_constitutions:
            data["constitutions"] = [{**c.to_dict(), "text": c.render(pset)} for c in constitutions]
        print_json(data)
        return
    click.echo(f"{pset.name}  (task {pset.task}, writer {pset.writer})")
    if pset.source:
        click.echo(f"source: {pset.source}")
    if pset.description:
        click.echo(pset.description)
    for p in selected:
        tags = []
        if pset.train_principles and p.name in pset.train_principles:
            tags.append("train")
        if pset.held_out_principles and p.name in pset.held_out_principles:
            tags.append("held out")
        click.echo(f"\n{p.name}" + (f" [{', '.join(tags)}]" if tags else ""))
        click.echo(f"  definition: {p.definition}")
        click.echo(f"  antithesis: {p.antithesis}")
    if show_constitutions:
        click.echo(f"\nconstitutions ({len(constitutions)}):")
        for i, c in enumerate(constitutions, start=1):
            click.echo(f"\n[{i}] {c.label()}")
            click.echo(c.render(pset))
