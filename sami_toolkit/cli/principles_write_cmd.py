"""``sami-kit principles write``: ask a principle writer for definitions and antitheses (spec §5.1) and save them.

Only click and the standard library are imported at module level; the writer, pydantic and rich load on use.
"""

from __future__ import annotations

import click


@click.command("write")
@click.option("--task", required=True, metavar="TEXT",
              help='What the constitution is for, in words, e.g. "summarize reddit posts" (fills the seed prompt\'s '
                   '{task}), or a known task: tldr, hh-rlhf.')
@click.option("--principle", "principles", multiple=True, required=True, metavar="NAME",
              help="A principle name (repeat for each), e.g. --principle concise --principle comprehensive.")
@click.option("--writer", default="litellm", show_default=True, metavar="NAME",
              help="Principle writer: litellm (API, from sami-kit-litellm) or hf (local model); "
                   "`sami-kit principle-writers list` shows all.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="A writer option, typed like YAML, e.g. -o model=gpt-4o -o api_key_env=OPENAI_API_KEY.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="FILE.yaml",
              help="Where to write the principle set; the raw answer goes beside it (FILE.raw.txt).")
@click.option("--name", "set_name", default=None, metavar="NAME", help="Name of the set (default: the file stem).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the written set as JSON on stdout.")
def write(task: str, principles: tuple[str, ...], writer: str, options: tuple[str, ...], out: str,
          set_name: str | None, force: bool, as_json: bool) -> None:
    """Write a principle set (definitions + antitheses) with a model, using the paper's seed prompt.

    \b
    Example:
      sami-kit principles write --task "summarize reddit posts" \\
          --principle concise --principle comprehensive \\
          --writer litellm -o model=gpt-4o -o api_key_env=OPENAI_API_KEY --out my-principles.yaml

    Exit codes: 0 written; 2 bad input (an unknown --task included); 4 the writer's model or API failed, or no
    answer was usable after its attempts (-o attempts=N; every answer is still saved beside --out).
    """
    from sami_toolkit.cli.common import print_json, stderr_console
    from sami_toolkit.cli.session import current_registry
    from sami_toolkit.core.config import apply_overrides
    from sami_toolkit.text.principle_writing import raw_path_for, write_principles

    writer_options = apply_overrides({}, options)
    component = current_registry().create("principle-writers", writer, writer_options,
                                          where=f"principle-writers.{writer}.options (-o)")
    console = stderr_console()
    with console.status(f"Asking principle writer '{writer}' for {len(principles)} principles…"):
        result = write_principles(component, task, list(principles), out, set_name=set_name, overwrite=force)
    principle_set = result.principle_set
    if as_json:
        print_json(principle_set.model_dump(exclude_none=True))
    else:
        from rich.table import Table

        table = Table(title=f"{principle_set.name} — {principle_set.task}", show_lines=True)
        table.add_column("principle", style="bold")
        table.add_column("definition")
        table.add_column("antithesis")
        for p in principle_set.principles:
            table.add_row(p.name, p.definition, p.antithesis)
        console.print(table)
    console.print(f"Wrote {out} (raw answer: {raw_path_for(out)}). Review it before training.")
