"""The training data of one iteration: ``pairs.jsonl`` read and checked, then cut into the steps' batches.

Every problem with the file is a :class:`ConfigError` naming the file and line, because a malformed record would
otherwise surface as a shape error deep inside the scoring code, minutes into a run.  The row schema and its
checks are :class:`sami_toolkit.core.records.PairRow`, shared with the loop that writes the file.
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Sequence

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.io import read_text
from sami_toolkit.core.records import PairRow

logger = logging.getLogger(__name__)


def _lines(text: str) -> list[str]:
    """Split like a file opened in text mode (universal newlines) — not ``str.splitlines``, which also breaks at
    U+2028 and friends, characters a JSON string may hold raw (the loop writes with ``ensure_ascii=False``)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def load_pairs(path: str | os.PathLike) -> list[dict]:
    """Read a ``pairs.jsonl`` file: one query per line with C constitutions, C training prompts (principle order
    shuffled per prompt, spec §2.8) and C responses, ``responses[j]`` generated under ``constitutions[j]``.

    Returns the records as dicts (what :func:`sami_step` takes), each checked by :meth:`PairRow.validate`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pairs file {path} does not exist",
                          hint="run the sampling stage first, or point the trainer at an existing pairs.jsonl")
    records: list[dict] = []
    for lineno, line in enumerate(_lines(read_text(path)), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        records.append(PairRow.validate(record, where))
    if not records:
        raise ConfigError(f"pairs file {path} holds no records")
    return records


def training_batches(pairs: Sequence[dict], *, steps: int, batch_size: int, seed: int,
                     source: str = "pairs") -> list[list[dict]]:
    """The ``steps`` batches of ``batch_size`` queries one training run consumes (spec §2.1): shuffle the pairs
    with ``random.Random(seed)`` and take the first ``steps * batch_size``.

    With fewer pairs than that (but at least one batch) the shuffled order is cycled and a warning is logged,
    so a short sampling stage still trains for the configured number of steps; fewer pairs than one batch is an
    error because no optimizer step could average over a full batch."""
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"training needs steps >= 1 and batch_size >= 1 (got steps={steps}, "
                          f"batch_size={batch_size})")
    n = len(pairs)
    if n < batch_size:
        raise ConfigError(f"{source}: {n} pair(s) but one batch needs batch_size={batch_size} queries",
                          hint="lower the batch size, or sample more queries (a larger pool or a looser filter)")
    order = list(pairs)
    random.Random(seed).shuffle(order)
    needed = steps * batch_size
    if n < needed:
        logger.warning("sami-kit: warning: %s: %d pairs for %d steps x %d queries = %d; cycling through the "
                       "shuffled pairs %.2f times (some queries are seen more than once)",
                       source, n, steps, batch_size, needed, needed / n)
        order = [order[i % n] for i in range(needed)]
    else:
        order = order[:needed]
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]
