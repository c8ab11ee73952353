"""The one file I/O layer: atomic writes, crash-safe JSONL appends, and readers with one error style.

Every module that writes a file the user keeps (the run directory, eval outputs, principle sets, checkpoints) goes
through here, so "a kill never leaves half a file" is true everywhere, not just where someone remembered it:

* whole files are written to a temporary file in the same directory, fsynced, then ``os.replace``-d over the
  target (:func:`atomic_write_text` and its JSON / YAML / JSONL forms); a directory is built beside its target and
  renamed into place (:func:`atomic_replace_dir`);
* JSONL logs are appended one complete, fsynced line at a time (:class:`JsonlAppender`); a kill can only tear the
  *last* line, which :func:`read_jsonl_tolerant` reports and :func:`repair_jsonl` truncates away;
* user-supplied input files are read with :func:`read_jsonl` / :func:`read_text`, which turn bad bytes and bad JSON
  into a :class:`ConfigError` naming the file and line (exit 2), never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from sami_toolkit.core.errors import ConfigError


# ------------------------------------------------------------------------------------------- atomic writes
def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same directory + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_write_yaml(path: str | Path, data: Any) -> Path:
    import yaml

    return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110))


def atomic_write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))


def atomic_replace_dir(staging: str | Path, target: str | Path) -> Path:
    """Move the finished directory ``staging`` to ``target`` so readers see the old or the new one, never a mix.

    An existing ``target`` is first renamed aside and deleted only after the new one is in place, so a crash
    between the two renames leaves the old copy recoverable rather than nothing."""
    staging, target = Path(staging), Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        remove_tree(old)
        os.replace(target, old)
    os.replace(staging, target)
    _fsync_dir(target.parent)
    if old is not None:
        remove_tree(old)
    return target


def remove_tree(path: str | Path) -> None:
    """Delete a file or directory tree if it exists."""
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# --------------------------------------------------------------------------------------------------- readers
def _decode(data: bytes, path: Path, line: int | None = None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"{path}:{line}" if line is not None else str(path)
        raise ConfigError(f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                          hint="save the file as UTF-8") from None


def read_text(path: str | Path) -> str:
    """A user's text file as ``str``; a missing file or bad bytes is a :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return _decode(data, path)


def read_json(path: str | Path, default: Any = None) -> Any:
    """A JSON file the tool wrote itself, or ``default`` when it is missing or unreadable.

    For the run directory's own files (metrics.json, train.json...), where a missing file means "stage not run
    yet" rather than an error."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def read_jsonl(path: str | Path) -> list[Any]:
    """Every value of a user's JSONL file (blank lines skipped); bad bytes or JSON name the file and line."""
    path = Path(path)
    text = read_text(path)
    # split on "\n" only: str.splitlines also breaks at U+2028/U+2029, which JSON strings may hold raw
    raw_lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in raw_lines if line.strip()]
    try:  # one parse for the whole file is several times faster than one json.loads per line
        parsed = json.loads("[" + ",".join(lines) + "]")
        if len(parsed) == len(lines):  # else some line held two values: find it line by line below
            return parsed
    except json.JSONDecodeError:
        pass
    records = []
    for lineno, line in enumerate(raw_lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
    return records


def read_jsonl_objects(path: str | Path, what: str) -> list[dict[str, Any]]:
    """:func:`read_jsonl` where every line must be a JSON object (``what`` names the file's role in errors)."""
    rows = read_jsonl(path)
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{i}: expected a JSON object ({what})")
    return rows


def read_jsonl_tolerant(path: str | Path) -> tuple[list[dict], int]:
    """``(records, torn)`` of an append-only log the tool writes: every complete line, and how many bytes at its end
    are a torn line.

    Appends write whole lines ending in ``\\n``, so a kill mid-append can only leave a last chunk *without* its
    newline; that chunk is the torn part.  An invalid line that *does* end in a newline is corruption, not a
    torn append, and raises :class:`ConfigError` naming the line."""
    path = Path(path)
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    *complete, tail = data.split(b"\n")
    records: list[dict] = []
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            records.append(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ConfigError(f"{path}:{number}: not valid JSON; the file is corrupted (not a torn last line): "
                              "delete it to regenerate this stage") from None
    return records, len(tail)


def repair_jsonl(path: str | Path) -> list[dict]:
    """Drop a torn last line (see :func:`read_jsonl_tolerant`) in place and return the complete records."""
    path = Path(path)
    records, torn = read_jsonl_tolerant(path)
    if torn:
        size = path.stat().st_size
        with open(path, "r+b") as handle:
            handle.truncate(size - torn)
            handle.flush()
            os.fsync(handle.fileno())
    return records


class JsonlAppender:
    """Append records to a JSONL file, one complete line per write, fsynced (so a kill loses at most the line
    being written, which :func:`repair_jsonl` then drops)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "ab")

    def append(self, record: dict) -> None:
        self.extend([record])

    def extend(self, records: Iterable[dict]) -> None:
        payload = b"".join((json.dumps(r, ensure_ascii=False, default=str) + "\n").encode("utf-8") for r in records)
        if payload:
            self._handle.write(payload)
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -------------------------------------------------------------------------------------------------- hashing
def hash_data(*parts: Any) -> str:
    """A short, stable key of JSON-able values (sorted keys; ``str`` for anything else): what a file cache of
    computed results is named by, so the same inputs find the same file."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def hash_path(path: str | Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files: Iterator[Path] = iter([path]) if path.is_file() else iter(sorted(p for p in path.rglob("*") if p.is_file()))
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()
