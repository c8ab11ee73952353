"""Plugin tests run against a real local OpenAI-compatible server (sami_toolkit.testing.server), never a network."""

from __future__ import annotations

import os
import re
from typing import Any, Iterator

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The fake key and its variable are exported to the tests through the environment (``SAMI_KIT_TEST_KEY_ENV`` names
# the variable), not by importing this module: several conftest.py files share the module name "conftest".
FAKE_KEY = "sk-test-SECRET-9f8e7d6c5b4a"
KEY_ENV = "SAMI_KIT_TEST_FAKE_KEY"
os.environ["SAMI_KIT_TEST_KEY_ENV"] = KEY_ENV


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A private cache directory and the fake key in the environment for every test (components come from a
    registry each test builds, so there is no plugin state to reset)."""
    monkeypatch.setenv("SAMI_KIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    yield


def prefer_good(request: dict[str, Any]) -> str:
    """A judge that prefers whichever response slot starts with 'good' (hh-rlhf and generic prompts)."""
    from sami_toolkit.testing.server import last_user_message

    text = last_user_message(request)
    match = re.search(r"Response A: (.*?)\n\n.*Response B: (.*?)\n\n", text, re.S)
    if not match:
        return "Comparison: I could not find the responses.\nFinal Response: neither"
    verdict = "A" if match.group(1).startswith("good") else "B"
    return f"Comparison: Response {verdict} follows the constitution.\nFinal Response: {verdict}"


@pytest.fixture
def server() -> Iterator[Any]:
    from sami_toolkit.testing.server import OpenAIServer

    with OpenAIServer(reply=prefer_good) as srv:
        yield srv
