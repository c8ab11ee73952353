"""Built-in plugin: query sources (an ordinary hookimpl module; component classes are imported inside the hooks)."""

from __future__ import annotations

from typing import Any

from sami_toolkit import hookimpl


@hookimpl
def register_query_sources(register: Any) -> None:
    from sami_toolkit.text.query_sources import CsvSource, HHRLHFSource, JsonlSource, MixSource, TLDRSource

    register(HHRLHFSource, aliases=("hh",))
    register(TLDRSource, aliases=("summarize_from_feedback",))
    register(JsonlSource)
    register(CsvSource)
    register(MixSource, aliases=("combined",))
