"""The rich console every part of sami-kit prints through (CLI tables, the loop, progress bars), and the one
progress-bar factory.

One place decides the width: in a terminal rich measures it; written to a file or a CI log, rich falls back to 80
columns, which cut the run table and squeezed progress lines, so there it is 120 unless ``COLUMNS`` says otherwise.

One place decides what a progress bar shows, so the loop's sampling, a trainer's steps and an evaluator's
generation read the same way: what is running, the bar, ``done/total``, elapsed time, the ETA, and an optional
per-task ``info`` text (the loss, which model samples).  rich is imported only when a console or bar is made.
"""

from __future__ import annotations

import os
from typing import Any

#: width of tables and progress lines written to a file or a CI log
LOG_WIDTH = 120


def console(stderr: bool = True) -> Any:
    """A rich Console on stderr (or stdout): the terminal's width, or :data:`LOG_WIDTH` when not a terminal."""
    from rich.console import Console

    made = Console(stderr=stderr)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made = Console(stderr=stderr, width=LOG_WIDTH)
    return made


_default_console = console


def progress_bar(console: Any = None, *, transient: bool = False, terminal_only: bool = False) -> Any:
    """A ``rich.progress.Progress`` with sami-kit's columns; use it as a context manager.

    ``console`` defaults to :func:`console` (stderr).  ``transient`` erases the bar when it finishes (for short
    inner steps); ``terminal_only`` draws nothing when the console is not a terminal (keeps CI logs free of
    per-item lines where the caller prints its own summary).  Tasks may carry an ``info`` field
    (``bar.add_task(label, total=n, info="...")``, updated with ``bar.update(task, info=...)``); it is optional."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class InfoColumn(ProgressColumn):
        """The task's ``info`` field, or nothing when the task has none."""

        def render(self, task: Any) -> Text:
            return Text(str(task.fields.get("info", "")))

    out = console if console is not None else _default_console()
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), InfoColumn(), console=out, transient=transient,
                    disable=terminal_only and not out.is_terminal)
