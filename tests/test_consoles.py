"""Tables and progress lines in logs are 120 columns wide, unless COLUMNS says otherwise."""

from __future__ import annotations

import pytest

from sami_toolkit.core.consoles import LOG_WIDTH, console


def test_log_console_is_wide_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    made = console()
    assert not made.is_terminal  # pytest captures stderr
    assert made.width == LOG_WIDTH == 120


def test_columns_overrides_the_log_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "90")
    assert console(stderr=False).width == 90


def test_training_progress_uses_the_log_width(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The trainer's progress bar (its own Console before) no longer falls back to rich's 80 columns."""
    from types import SimpleNamespace

    from sami_toolkit.training.progress import StepProgress

    monkeypatch.delenv("COLUMNS", raising=False)
    request = SimpleNamespace(steps=3, progress=None)
    with StepProgress(request) as progress:  # type: ignore[arg-type]
        assert progress._progress.console.width == LOG_WIDTH
