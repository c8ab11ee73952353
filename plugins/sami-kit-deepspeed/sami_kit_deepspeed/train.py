"""One rank of a launched DeepSpeed training: ``python -m sami_kit_deepspeed.train LAUNCH_DIR/request.json``.

Started by :func:`sami_kit_deepspeed.launch.launch` through ``torchrun`` or the ``deepspeed`` launcher (which set
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT). Rank 0 appends one JSON line per optimizer step to
``metrics.jsonl`` next to the request (the parent process forwards them to the run's progress display) and saves
the checkpoint; every rank writes ``rank<N>.json`` with digests of its weights. A configuration problem is written
to ``error.json`` so the parent can report it as one line with the right exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable


def _reporter(metrics: Any) -> Callable[[int, dict], None]:
    """The step callback of rank 0: one complete, fsynced line per step, so the parent never reads half a line."""
    return lambda step, record: metrics.append(record)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sami_kit_deepspeed.train LAUNCH_DIR/request.json", file=sys.stderr)
        return 2
    request_file = Path(args[0])
    launch_dir = request_file.parent
    rank = int(os.environ.get("RANK", "0"))

    from sami_toolkit.core.errors import SamiKitError
    from sami_toolkit.core.io import JsonlAppender, atomic_write_json

    from .engine import train_in_process
    from .launch import request_from_json

    try:
        with contextlib.ExitStack() as stack:
            # only rank 0 reports steps (train_in_process calls report on rank 0 only)
            report = None
            if rank == 0:
                metrics = stack.enter_context(JsonlAppender(launch_dir / "metrics.jsonl"))
                report = _reporter(metrics)
            request, options = request_from_json(json.loads(request_file.read_text(encoding="utf-8")))
            train_in_process(request, options, report=report, launch_dir=launch_dir)
    except SamiKitError as exc:
        if rank == 0:
            atomic_write_json(launch_dir / "error.json", {"message": str(exc), "exit_code": int(exc.exit_code)})
        print(f"sami-kit: error (rank {rank}): {exc}", file=sys.stderr)
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
