"""The rich console every part of sami-kit prints through (CLI tables, the loop, progress bars).

One place decides the width: in a terminal rich measures it; written to a file or a CI log, rich falls back to 80
columns, which cut the run table and squeezed progress lines, so there it is 120 unless ``COLUMNS`` says otherwise.
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
