"""``sami-kit report RUN_DIR``: a self-contained HTML report of a run (click + stdlib at import time)."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="Output file (default RUN_DIR/report.html).")
def report(run_dir: str, out: str | None) -> None:
    """Write an HTML report (Figure 2 panels, judge health, statistics, example responses) for RUN_DIR.

    The page has no external assets and needs no JavaScript; missing pieces of the run are noted, not fatal.
    """
    from sami_toolkit.report.run_page import write_report

    path = write_report(run_dir, out)
    click.echo(f"wrote {path}", err=True)
