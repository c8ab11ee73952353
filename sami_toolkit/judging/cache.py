"""SQLite judgment cache: rerunning an evaluation makes zero new judge calls, and failed calls are never cached.

Each row is keyed by a sha256 content hash (:func:`judgment_key`) of everything that can change a verdict: the
judge model, the system and user prompt templates, :data:`~sami_toolkit.judging.pairwise.PARSER_VERSION`, the decoding
parameters, and the item itself (query, constitution, both responses *in their order*). Anything not in the key
(API base URL, timeouts, concurrency, the API key) cannot change what the model says, so changing it keeps the
cache valid. Secrets never enter the key or the rows.

Real verdicts (``A``, ``B``, ``tie``) are stored, and so is an answer the judge *did* give that the strict parse
could not read (verdict :data:`UNPARSED`, its raw text kept): "Final Response: A and B" is a failure under the
strict parse but a tie under the paper's (``parse: paper``, spec §10.15), so a rerun with the other parse re-reads
the stored answer instead of paying for the same call again. A failed *call* (timeout, HTTP error, no answer) is
never stored: AlpacaEval #340 cached failed annotations as nulls and users had to delete them by hand (anchors-eval
§10). :meth:`JudgmentCache.put` refuses ``failed``, and an ``unparsed`` row without its answer.

Concurrency: one connection per process (reopened after a fork), WAL journal so readers and a writer in other
processes do not block each other, and a lock around every statement so threads and asyncio callbacks can share it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from sami_toolkit.core.errors import InfrastructureError

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.core.records import JudgeItem

SCHEMA_VERSION = 1
_VERDICTS = ("A", "B", "tie")
#: the stored state of an answer the judge gave but the strict parse could not read (its ``raw`` is the answer)
UNPARSED = "unparsed"
_STORED = (*_VERDICTS, UNPARSED)


def judgment_key(*, model: str, system_template: str, user_template: str, parser_version: str,
                 decoding: Mapping[str, Any], item: "JudgeItem") -> str:
    """The content hash of one judge call. The item's ``id`` is deliberately *not* part of it: the same texts
    judged under another id reuse the verdict."""
    payload = {
        "v": SCHEMA_VERSION,
        "model": model,
        "system_template": system_template,
        "user_template": user_template,
        "parser_version": parser_version,
        "decoding": {k: decoding[k] for k in sorted(decoding)},
        "task": item.task,
        "query": item.query,
        "constitution": item.constitution,
        "response_a": item.response_a,
        "response_b": item.response_b,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class CachedJudgment:
    """A cached verdict (or :data:`UNPARSED`) with its raw judge text and what the original call cost."""

    verdict: str
    raw: str
    cost: float
    model: str
    created: float


class JudgmentCache:
    """A judgment store at ``path`` (created on first use, with parent directories)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    # -- connection ----------------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, verdict TEXT NOT NULL, "
                             "raw TEXT NOT NULL, cost REAL NOT NULL, model TEXT NOT NULL, created REAL NOT NULL)")
            except sqlite3.Error as exc:
                raise InfrastructureError(f"judgment cache {self.path}: cannot open: {exc}",
                                          hint="pass cache_path=none to judge without a cache") from None
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> "JudgmentCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- access --------------------------------------------------------------------------------------------
    def get(self, key: str) -> CachedJudgment | None:
        with self._lock:
            try:
                row = self._connection().execute(
                    "SELECT verdict, raw, cost, model, created FROM judgments WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                raise InfrastructureError(f"judgment cache {self.path}: read failed: {exc}") from None
        if row is None or row[0] not in _STORED:
            return None
        return CachedJudgment(verdict=row[0], raw=row[1], cost=float(row[2]), model=row[3], created=float(row[4]))

    def put(self, key: str, *, verdict: str, raw: str, cost: float = 0.0, model: str = "") -> None:
        """Store a verdict, or an unparsed answer (``verdict=UNPARSED`` with the answer as ``raw``). A failure is
        not a verdict: ``put`` refuses anything else, and an unparsed row without its answer."""
        if verdict not in _STORED:
            raise ValueError(f"refusing to cache verdict {verdict!r}: only A, B, tie or an unparsed answer are "
                             "cached")
        if verdict == UNPARSED and not (raw or "").strip():
            raise ValueError("refusing to cache an unparsed answer without its raw text")
        with self._lock:
            try:
                self._connection().execute(
                    "INSERT OR REPLACE INTO judgments (key, verdict, raw, cost, model, created) VALUES (?,?,?,?,?,?)",
                    (key, verdict, raw, float(cost), model, time.time()))
            except sqlite3.Error as exc:
                raise InfrastructureError(f"judgment cache {self.path}: write failed: {exc}") from None

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM judgments").fetchone()[0])


def open_cache(cache_path: str | None) -> JudgmentCache | None:
    """The cache a judge's ``cache_path`` option names: ``None`` -> ``$SAMI_KIT_CACHE/judgments.sqlite``,
    ``"none"`` (any case) or ``""`` -> no cache."""
    from sami_toolkit.core.components import default_cache_dir

    if cache_path is None:
        return JudgmentCache(default_cache_dir() / "judgments.sqlite")
    if cache_path.strip().lower() in ("", "none", "off", "false"):
        return None
    return JudgmentCache(Path(cache_path).expanduser())
