"""Built-in plugin: judges (an ordinary hookimpl module; component classes are imported inside the hooks).

``hf`` is the offline judge (a local transformers model read through next-token probabilities); API judges come
from the ``sami-kit-litellm`` plugin.
"""

from __future__ import annotations

from typing import Any

from sami_toolkit import hookimpl


@hookimpl
def register_judges(register: Any) -> None:
    from sami_toolkit.builtin.hf_judge import HFJudge

    register(HFJudge)
