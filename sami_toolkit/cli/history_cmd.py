"""``sami-kit eval history DIR…``: each gate metric with its CI over successive checkpoints, the significant steps,
and a Bradley–Terry ranking when several candidates were judged against one baseline. Only click at import."""

from __future__ import annotations

import click


@click.command("history")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--svg", "svg_path", type=click.Path(dir_okay=False), help="Write the SVG line charts here.")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False), help="Write the Markdown table here.")
@click.option("--json", "as_json", is_flag=True, help="Print checkpoints, steps and rankings as JSON on stdout.")
@click.option("--bootstrap", type=click.IntRange(min=0, max=100_000), default=1000, show_default=True,
              help="Bootstrap replicates of the Bradley-Terry intervals.")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=0, show_default=True,
              help="Seed of the ranking bootstrap.")
def history_cmd(paths: tuple[str, ...], svg_path: str | None, md_path: str | None, as_json: bool, bootstrap: int,
                seed: int) -> None:
    """Metrics with CIs over checkpoints, from eval compare summaries (summary.json or --out-dir) or run
    directories, in the order given. Flags each significant step (5%, two-sided) and ranks several candidates
    against one baseline (Bradley-Terry, bootstrap intervals). Exit 0, or 2 on bad input.
    """
    from rich.markup import escape
    from rich.table import Table

    from sami_toolkit.cli.common import print_json, stderr_console
    from sami_toolkit.core.io import atomic_write_text
    from sami_toolkit.evaluation.history import load_history, rankings, step_changes
    from sami_toolkit.report.history import (
        RANKING_HEADERS,
        history_headers,
        history_markdown,
        history_rows,
        history_svg,
        ranking_rows,
        shown_metrics,
    )

    checkpoints = load_history(paths)
    steps = step_changes(checkpoints)
    ranks = rankings(checkpoints, bootstrap=bootstrap, seed=seed)
    metrics = shown_metrics(checkpoints)
    console = stderr_console()
    table = Table(title="checkpoint history (▲/▼ = significant step from the previous checkpoint)")
    for h in history_headers(metrics):
        table.add_column(h)
    for row in history_rows(checkpoints, steps, metrics):
        table.add_row(*(escape(c) for c in row))
    console.print(table)
    for baseline, ranking in ranks.items():
        rt = Table(title=f"Bradley-Terry ranking against {baseline}")
        for h in RANKING_HEADERS:
            rt.add_column(h)
        for row in ranking_rows(ranking):
            rt.add_row(*(escape(c) for c in row))
        console.print(rt)
    if svg_path:
        console.print(f"wrote {atomic_write_text(svg_path, history_svg(checkpoints, steps, metrics))}")
    if md_path:
        console.print(f"wrote {atomic_write_text(md_path, history_markdown(checkpoints, steps, ranks))}")
    if as_json:
        print_json({"checkpoints": [c.to_dict() for c in checkpoints], "steps": steps, "rankings": ranks})
