"""One rank of a launched DeepSpeed training: ``python -m sami_kit_deepspeed.train LAUNCH_DIR/request.json``.

Started by :func:`sami_kit_deepspeed.trainer.launch` through ``torchrun`` or the ``deepspeed`` launcher (which set
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT). Rank 0 appends one JSON line per optimizer step to
``metrics.jsonl`` next to the request (the parent process forwards them to the run's progress display) and saves
the checkpoint; every rank writes ``rank<N>.json`` with digests of its weights. A configuration problem is written
to ``error.json`` so the parent can report it as one line with the right exit code.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sami_kit_deepspeed.train LAUNCH_DIR/request.json", file=sys.stderr)
        return 2
    request_file = Path(args[0])
    launch_dir = request_file.parent
    rank = int(os.environ.get("RANK", "0"))

    from sami_toolkit.core.errors import SamiKitError

    from .trainer import request_from_json, train_in_process

    metrics_path = launch_dir / "metrics.jsonl"

    def report(step: int, record: dict) -> None:
        with metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    try:
        request, options = request_from_json(json.loads(request_file.read_text(encoding="utf-8")))
        train_in_process(request, options, report=report, launch_dir=launch_dir)
    except SamiKitError as exc:
        if rank == 0:
            (launch_dir / "error.json").write_text(json.dumps({"message": str(exc), "exit_code": int(exc.exit_code)}))
        print(f"sami-kit: error (rank {rank}): {exc}", file=sys.stderr)
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
