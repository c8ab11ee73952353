"""Built-in plugin: samplers (an ordinary hookimpl module; component classes are imported inside the hooks)."""

from __future__ import annotations

from typing import Any

from sami_toolkit import hookimpl


@hookimpl
def register_samplers(register: Any) -> None:
    from sami_toolkit.builtin.hf_sampler import HFSampler

    register(HFSampler, aliases=("transformers",))
