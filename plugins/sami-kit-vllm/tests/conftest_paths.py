"""Constants shared by the plugin's conftest and tests (a plain module: test files cannot import conftest.py
reliably when several conftest.py files are collected in one session)."""

from __future__ import annotations

import os
from pathlib import Path

FAKE_DIR = Path(__file__).parent / "fake_vllm"
REAL_VLLM = os.environ.get("SAMI_KIT_REAL_VLLM", "") not in ("", "0", "false", "False")

#: the process titles vLLM gives its engine-core and worker processes (setproctitle; "VLLM::EngineCore", ...)
ENGINE_TITLE_PREFIX = "VLLM::"


def _proc_stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, ppid) of a process from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm, rest = raw[raw.index("(") + 1:raw.rindex(")")], raw[raw.rindex(")") + 2:].split()
    return comm, rest[0], int(rest[1])


def engine_processes(*, under: int | None = None) -> dict[int, str]:
    """Live (not zombie) vLLM engine processes: pid -> title; ``under``: only descendants of that pid."""
    stats: dict[int, tuple[str, str, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    found: dict[int, str] = {}
    for pid, (comm, state, _) in stats.items():
        if state in ("Z", "X") or not comm.startswith(ENGINE_TITLE_PREFIX):
            continue
        if under is not None:
            node, seen = pid, set()
            while node in stats and node not in seen and node != under:
                seen.add(node)
                node = stats[node][2]
            if node != under:
                continue
        found[pid] = comm
    return found


def wait_for_no_engine_processes(pids: set[int] | None = None, *, under: int | None = None,
                                 timeout: float = 20.0) -> dict[int, str]:
    """Wait until none of ``pids`` (or no engine process ``under`` a pid) is alive; returns those still alive."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        alive = engine_processes(under=under)
        if pids is not None:
            alive = {pid: title for pid, title in alive.items() if pid in pids}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.25)
