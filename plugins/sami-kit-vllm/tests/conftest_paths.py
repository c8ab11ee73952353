"""Constants shared by the plugin's conftest and tests (a plain module: test files cannot import conftest.py
reliably when several conftest.py files are collected in one session)."""

from __future__ import annotations

import os
from pathlib import Path

FAKE_DIR = Path(__file__).parent / "fake_vllm"
REAL_VLLM = os.environ.get("SAMI_KIT_REAL_VLLM", "") not in ("", "0", "false", "False")
