"""sami-kit plugin ``sami-kit-litellm``: API judge, principle writer and sampler through litellm.

This module is what the ``sami_kit`` entry point loads, so it stays light: litellm (≈4 s to import) and the
component modules are imported inside the hook functions, only when a registry is built.
"""

from __future__ import annotations

from typing import Any

from sami_toolkit import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_judges(register: Any) -> None:
    from .judge import LiteLLMJudge

    register(LiteLLMJudge, aliases=("api",))


@hookimpl
def register_principle_writers(register: Any) -> None:
    from .writer import LiteLLMWriter

    register(LiteLLMWriter)


@hookimpl
def register_samplers(register: Any) -> None:
    from .sampler import LiteLLMSampler

    register(LiteLLMSampler)
