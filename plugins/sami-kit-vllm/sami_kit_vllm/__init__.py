"""sami-kit-vllm: a vLLM sampler (``vllm``) and log-prob scorer / MI evaluator (``mi-vllm``) for sami-kit.

This module is the plugin (entry point group ``sami_kit``): it only holds hook implementations, and imports the
component modules inside them.  Nothing here imports vLLM, torch or transformers, so the plugin registers in any
environment and ``sami-kit samplers list`` stays fast; vLLM itself is needed only when a component runs (a missing
vLLM is reported as an infrastructure error, exit 4, with an install hint).
"""

from __future__ import annotations

from typing import Any

from sami_toolkit import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_samplers(register: Any) -> None:
    from .sampler import VLLMSampler

    register(VLLMSampler)


@hookimpl
def register_evaluators(register: Any) -> None:
    from .evaluator import VLLMMIEvaluator

    register(VLLMMIEvaluator)
