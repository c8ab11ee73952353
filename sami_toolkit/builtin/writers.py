"""Built-in plugin: principle writers (an ordinary hookimpl module; component classes are imported inside the hooks).

``hf`` writes principles with a local transformers model; the API writer comes from ``sami-kit-litellm``.
"""

from __future__ import annotations

from typing import Any

from sami_toolkit import hookimpl


@hookimpl
def register_principle_writers(register: Any) -> None:
    from sami_toolkit.builtin.hf_writer import HFWriter

    register(HFWriter)
