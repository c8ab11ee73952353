"""Built-in plugin: judges (an ordinary hookimpl module; component classes are imported inside the hooks)."""

from __future__ import annotations

from sami_toolkit import hookimpl  # noqa: F401
