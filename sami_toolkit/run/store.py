"""Run-directory I/O (design.md §5): atomic writes, crash-safe JSONL appends, and the run manifest.

A run can be killed at any moment (SIGKILL included) and resumed, so every file is either complete or absent:

* whole files (JSON, YAML, pairs) are written to a temporary file in the same directory, fsynced, then
  ``os.replace``-d over the target — readers never see half a file;
* samples are appended one JSONL line at a time and fsynced; a kill can only tear the *last* line, which
  :func:`read_jsonl` detects (no trailing newline or invalid JSON) and :func:`repair_jsonl` truncates away;
* the manifest records each stage's status and the content hash of its output, so a resumed run skips finished
  stages and can tell a finished stage from a file that merely exists.

Layout::

    <run>/config.yaml  manifest.json  principles.yaml  summary.md
    <run>/iterations/<t>/samples.jsonl  pairs.jsonl  checkpoint/  metrics.json  eval/
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from sami_toolkit.core.errors import ConfigError

MANIFEST_VERSION = 1


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
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


# --------------------------------------------------------------------------------------------------- JSONL
def read_jsonl(path: str | Path) -> tuple[list[dict], int]:
    """``(records, torn)``: every complete line of ``path``, and how many bytes at its end are a torn line.

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
    """Drop a torn last line (see :func:`read_jsonl`) in place and return the complete records."""
    path = Path(path)
    records, torn = read_jsonl(path)
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
        payload = b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8") for r in records)
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


# ------------------------------------------------------------------------------------------------- manifest
def _git_commit() -> str | None:
    import subprocess

    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info() -> dict[str, Any]:
    """Versions and plugins recorded in the manifest (reproducibility, anchors-training §10 item 10)."""
    from importlib.metadata import PackageNotFoundError, version

    from sami_toolkit import __version__
    from sami_toolkit.plugins.loading import get_plugin_system

    versions: dict[str, str | None] = {"python": platform.python_version(), "sami-kit": __version__}
    for package in ("torch", "transformers", "datasets", "deepspeed", "peft", "safetensors"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    plugins = [{"name": r.name, "version": r.version, "builtin": r.builtin, "error": r.error}
               for r in get_plugin_system().records]
    return {"versions": versions, "plugins": plugins, "platform": platform.platform(), "git_commit": _git_commit(),
            "argv": sys.argv}


class RunDir:
    """A run directory: paths, the manifest and stage bookkeeping.

    Stage status lives in ``manifest.json`` under ``iterations["<t>"]["stages"][stage]`` with
    ``{"status": "done", "hash": ..., "finished": ...}``; a stage not marked done is redone (its partial output
    is resumed where that is safe — samples — and discarded otherwise).
    """

    STAGES = ("sample", "pairs", "train", "eval")

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"
        self.config_path = self.root / "config.yaml"
        self._manifest: dict[str, Any] | None = None

    # ---------------------------------------------------------------------------------------------- paths
    def iteration_dir(self, t: int) -> Path:
        return self.root / "iterations" / str(t)

    def samples_path(self, t: int) -> Path:
        return self.iteration_dir(t) / "samples.jsonl"

    def pairs_path(self, t: int) -> Path:
        return self.iteration_dir(t) / "pairs.jsonl"

    def checkpoint_dir(self, t: int) -> Path:
        return self.iteration_dir(t) / "checkpoint"

    def metrics_path(self, t: int) -> Path:
        return self.iteration_dir(t) / "metrics.json"

    def eval_dir(self, t: int) -> Path:
        return self.iteration_dir(t) / "eval"

    # ------------------------------------------------------------------------------------------- manifest
    def exists(self) -> bool:
        return self.manifest_path.is_file()

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            if not self.manifest_path.is_file():
                raise ConfigError(f"{self.root}: not a sami-kit run directory (no manifest.json)")
            try:
                self._manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{self.manifest_path}: invalid JSON ({exc})") from None
        return self._manifest

    def save_manifest(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        atomic_write_json(self.manifest_path, self.manifest)

    def create(self, *, config: dict[str, Any], config_hash: str, seed: int, principles: dict[str, Any]) -> None:
        """Start a new run directory: config.yaml, principles.yaml and a fresh manifest."""
        from sami_toolkit.core.config import redact

        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_yaml(self.config_path, redact(config))
        atomic_write_yaml(self.root / "principles.yaml", principles)
        self._manifest = {
            "manifest_version": MANIFEST_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config_hash": config_hash,
            "config_file_hash": hash_path(self.config_path),
            "principles_hash": hash_path(self.root / "principles.yaml"),
            "seeds": {"run": seed},
            **environment_info(),
            "status": "running",
            "iterations": {},
        }
        self.save_manifest()

    def record_resume(self) -> None:
        env = environment_info()
        self.manifest.setdefault("resumes", []).append(
            {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": env["versions"]})
        self.manifest["status"] = "running"
        self.save_manifest()

    def _stages(self, t: int) -> dict[str, Any]:
        return self.manifest["iterations"].setdefault(str(t), {}).setdefault("stages", {})

    def stage_done(self, t: int, stage: str) -> bool:
        return self._stages(t).get(stage, {}).get("status") == "done"

    def mark_done(self, t: int, stage: str, output: Path | None = None, **extra: Any) -> None:
        entry: dict[str, Any] = {"status": "done", "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if output is not None and output.exists():
            entry["output"] = str(output.relative_to(self.root))
            entry["hash"] = hash_path(output)
        entry.update(extra)
        self._stages(t)[stage] = entry
        self.save_manifest()

    def set_iteration_info(self, t: int, **info: Any) -> None:
        self.manifest["iterations"].setdefault(str(t), {}).update(info)
        self.save_manifest()

    def finish(self) -> None:
        self.manifest["status"] = "complete"
        self.save_manifest()


def remove_tree(path: Path) -> None:
    """Delete a partial output directory (a killed training's checkpoint-in-progress)."""
    shutil.rmtree(path, ignore_errors=True)
