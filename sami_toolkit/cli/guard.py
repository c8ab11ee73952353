"""The CLI's top-level guard: what the user sees when a command fails.

Exit codes are a contract with CI (:class:`~sami_toolkit.core.errors.ExitCode`): 1 means "the gate found a
regression", so a crash must never produce it — Python's default for an uncaught exception. Three kinds of failure
reach the top:

* a :class:`~sami_toolkit.core.errors.SamiKitError` — the user's input or the infrastructure: one ``Error: ...``
  line (secrets scrubbed) and its own exit code (2 or 4);
* anything else — a bug in sami-kit or a plugin: one line ``sami-kit: internal error (Type: message), please report
  it; details in LOG`` and exit 4, with the full traceback written to ``LOG`` (under ``$SAMI_KIT_CACHE/logs``, or the
  temp directory when that is not writable) so the report can carry it without the console ever showing one;
* an :class:`OSError` nothing turned into a sami-kit error (an output path that is a directory, a full disk): the
  same line and log as "operating-system error", exit 4, without the request to report it;
* a closed output pipe (``sami-kit ... | head``): no message, exit 141 like any Unix tool killed by SIGPIPE.

Only click and the standard library are imported at module level: this module loads on every ``sami-kit`` start.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, TypeVar

import click

from sami_toolkit.core.errors import SamiKitError

T = TypeVar("T")

#: exit code of an unexpected exception (the documented "infrastructure or internal error")
INTERNAL_ERROR_EXIT = 4

#: exit code when stdout is a pipe whose reader went away (128 + SIGPIPE, what a shell reports for a killed tool)
BROKEN_PIPE_EXIT = 141

#: longest exception message put on the one console line (the log has all of it)
MAX_MESSAGE_CHARS = 300


INTERRUPTED = "Interrupted; work written so far is kept (rerun with --resume where supported)."


def guarded(call: Callable[[], T]) -> T:
    """``call()`` with every failure mapped to its message and exit code (raised as click's ``Exit``, so it holds
    under ``CliRunner`` too): sami-kit errors -> their code, Ctrl-C -> 130, a closed pipe -> 141, anything else ->
    :func:`internal_error` (4).  Click's own usage errors (2) and deliberate exits (a gate's 0/1/3) pass through."""
    try:
        return call()
    except SamiKitError as exc:
        click.echo(error_line(exc), err=True)
        raise click.exceptions.Exit(int(exc.exit_code)) from None
    except (KeyboardInterrupt, click.Abort):  # Abort: click's own Ctrl-C/EOF at a prompt (it would exit 1)
        click.echo(INTERRUPTED, err=True)
        raise click.exceptions.Exit(130) from None
    except (click.ClickException, click.exceptions.Exit):
        raise
    except BrokenPipeError:
        raise click.exceptions.Exit(broken_pipe()) from None
    except OSError as exc:  # a path that cannot be written, a full disk, a refused connection: the environment
        raise click.exceptions.Exit(internal_error(exc, what="operating-system error", report=False)) from None
    except Exception as exc:  # noqa: BLE001 - the top-level guard: a bug, never a traceback or exit 1
        raise click.exceptions.Exit(internal_error(exc)) from None


def _scrub(text: str) -> str:
    try:
        from sami_toolkit.core.secrets import scrub

        return scrub(text)
    except Exception:  # noqa: BLE001 - the guard itself must never fail
        return text


def error_line(exc: BaseException) -> str:
    """The console line of a sami-kit error: ``Error: <message>`` (+ its hint), secrets scrubbed."""
    return _scrub(f"Error: {exc}")


def summary(exc: BaseException) -> str:
    """``Type: first line of the message`` (shortened), scrubbed — what the console line shows of a crash."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ""
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return _scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def log_dir() -> Path:
    """Where crash logs go: ``$SAMI_KIT_CACHE/logs`` (default ``~/.cache/sami-kit/logs``)."""
    cache = os.environ.get("SAMI_KIT_CACHE") or str(Path.home() / ".cache" / "sami-kit")
    return Path(cache) / "logs"


def write_crash_log(exc: BaseException) -> Path | None:
    """Write the traceback of ``exc`` (with the command line and versions, secrets scrubbed) to a new log file and
    return its path; ``None`` if no directory was writable."""
    import datetime
    import platform
    import tempfile
    import traceback

    from sami_toolkit.core.version import __version__

    now = datetime.datetime.now()
    lines = [
        f"sami-kit {__version__}: internal error at {now.isoformat(timespec='seconds')}",
        "command: sami-kit " + " ".join(sys.argv[1:]),
        f"python {platform.python_version()} on {platform.platform()}",
        "",
        "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    ]
    text = _scrub("\n".join(lines)).rstrip("\n") + "\n"
    stem = f"crash-{now:%Y%m%d-%H%M%S}-{os.getpid()}"
    for directory in (log_dir(), Path(tempfile.gettempdir()) / "sami-kit-logs"):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for attempt in range(1, 100):  # several crashes in one second of one process (tests, notebooks)
                path = directory / (f"{stem}.log" if attempt == 1 else f"{stem}-{attempt}.log")
                try:
                    with open(path, "x", encoding="utf-8", errors="replace") as handle:
                        handle.write(text)
                    return path
                except FileExistsError:
                    continue
        except OSError:
            continue
    return None


def internal_error(exc: BaseException, *, what: str = "internal error", report: bool = True) -> int:
    """Report an unexpected exception as one line on stderr (traceback to a log file); the exit code to use.

    ``report=False`` for failures of the environment rather than of sami-kit (an :class:`OSError`): same line and
    log, without asking for a bug report."""
    try:
        path = write_crash_log(exc)
    except Exception:  # noqa: BLE001 - e.g. MemoryError while formatting: still one line, still exit 4
        path = None
    where = f"details in {path}" if path is not None else "no log could be written"
    please = ", please report it" if report else ""
    try:
        click.echo(f"sami-kit: {what} ({summary(exc)}){please}; {where}", err=True)
    except Exception:  # noqa: BLE001 - stderr itself may be gone
        pass
    return INTERNAL_ERROR_EXIT


def broken_pipe() -> int:
    """stdout's reader went away: stop writing there quietly (no "Exception ignored" at exit); the exit code."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (e.g. under CliRunner)
        pass
    return BROKEN_PIPE_EXIT
