"""The run directory (design.md §5): its layout, the run manifest and stage bookkeeping.

A run can be killed at any moment (SIGKILL included) and resumed, so every file is either complete or absent: whole
files are written atomically and samples appended one fsynced line at a time (:mod:`sami_toolkit.core.io`).  The
manifest records each stage's status and a hash of its output, so a resumed run skips finished stages and can tell
a finished stage from a file that merely exists: a stage is finished only when the manifest says ``done``, and
that mark is written after the stage's output is complete and in place.

Layout::

    <run>/config.yaml  manifest.json  principles.yaml  summary.md
    <run>/iterations/<t>/samples.jsonl  pairs.jsonl  checkpoint/  metrics.json  eval/

The row schemas of the JSONL files are in :mod:`sami_toolkit.core.records`.
"""

from __future__ import annotations

import hashlib
import json
import platform
import struct
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.io import atomic_write_json, atomic_write_yaml, hash_path, read_text, repair_jsonl
from sami_toolkit.core.records import SampleRow
from sami_toolkit.core.version import __version__

MANIFEST_VERSION = 1
#: files up to this size are hashed in full by :func:`hash_layout` (configs, tokenizer files, adapter configs)
SMALL_FILE_BYTES = 1 << 20
#: what ``hash_scope`` says in a stage entry whose hash is :func:`hash_layout`'s, not the bytes'
LAYOUT_SCOPE = "names, sizes, safetensors headers, files up to 1 MiB"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------------------------------------- hashing
def _safetensors_header(path: Path) -> bytes:
    """The JSON header of a safetensors file: every tensor's name, dtype, shape and byte range (and the
    ``__metadata__``), i.e. what the file holds without reading the weights.  A file too short to have one (or not
    safetensors at all) gives ``b""``; its size is hashed anyway."""
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return b""
        (length,) = struct.unpack("<Q", prefix)
        if length > path.stat().st_size - 8:
            return b""
        return handle.read(length)


def hash_layout(directory: str | Path) -> str:
    """A hash of a checkpoint directory that does not read its weights.

    :func:`~sami_toolkit.core.io.hash_path` reads every byte, which for a 7B checkpoint is ~14 GB re-read right
    after the trainer wrote it, only to record a hash nobody verifies byte for byte.  This hashes, per file (sorted
    by relative name): the name, the size, the header of each ``.safetensors`` file (tensor names, dtypes, shapes,
    offsets) and the full content of small files (config.json, tokenizer files, adapter_config.json).  A
    truncated, swapped or re-shaped checkpoint changes it; weights rewritten in place with the same shapes do not.
    Resume does not depend on it: the manifest's ``done`` mark, written after the trainer renamed the finished
    checkpoint into place, is what tells a finished stage from a directory that merely exists."""
    root = Path(directory)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(root)}\0{size}\0".encode())
        if file.suffix == ".safetensors":
            digest.update(_safetensors_header(file))
        elif size <= SMALL_FILE_BYTES:
            digest.update(file.read_bytes())
    return "sha256:" + digest.hexdigest()


# ------------------------------------------------------------------------------------------- config changes
#: how many changed keys a refused ``--resume`` lists before "... and N more"
MAX_LISTED_CHANGES = 20
_ABSENT = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value, ensure_ascii=False, default=str)


def config_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs, ``(absent)`` where a side lacks it.

    Mappings are compared key by key (sorted), and lists of mappings of the same length item by item, by index —
    the paths ``-o evaluators.0.name=...`` takes; any other value (a number, a list of strings, a list that grew)
    is compared whole, so the line shows both values."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        keys: list[Any] = sorted(set(old) | set(new), key=str)
        pairs = [(key, old.get(key, _ABSENT), new.get(key, _ABSENT)) for key in keys]
    elif (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
          and any(isinstance(v, (dict, list)) for v in (*old, *new))):
        pairs = [(i, a, b) for i, (a, b) in enumerate(zip(old, new))]
    else:
        return [f"{prefix or '(config)'}: {_show(old)} -> {_show(new)}"]
    out: list[str] = []
    for key, a, b in pairs:
        out.extend(config_changes(a, b, f"{prefix}.{key}" if prefix else str(key)))
    return out


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


def plugin_entries(records: Iterable[Any]) -> list[dict[str, Any]]:
    """The manifest's ``plugins`` list from plugin load records (anything with ``name``, ``version``, ``builtin``
    and ``error`` attributes, e.g. :class:`sami_toolkit.plugins.loading.PluginRecord`)."""
    return [{"name": r.name, "version": getattr(r, "version", None), "builtin": getattr(r, "builtin", False),
             "error": getattr(r, "error", None)} for r in records]


def environment_info(plugins: Iterable[Any] = ()) -> dict[str, Any]:
    """Versions and plugins recorded in the manifest (reproducibility, anchors-training §10 item 10).

    ``plugins`` are the plugin load records of the run's plugin system: the caller passes them in, because the
    run directory sits in the core layer and knows nothing of how plugins are found."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {"python": platform.python_version(), "sami-kit": __version__}
    for package in ("torch", "transformers", "datasets", "deepspeed", "peft", "safetensors"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"versions": versions, "plugins": plugin_entries(plugins), "platform": platform.platform(),
            "git_commit": _git_commit(), "argv": sys.argv}


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

    def read_samples(self, t: int) -> list[SampleRow]:
        """The complete rows of iteration ``t``'s ``samples.jsonl`` ([] before sampling started); a line torn by a
        kill is cut from the file first, so appending after it gives a clean file."""
        path = self.samples_path(t)
        return [SampleRow.from_dict(record, f"{path}:{line}") for line, record in enumerate(repair_jsonl(path), 1)]

    # ------------------------------------------------------------------------------------------- manifest
    def exists(self) -> bool:
        return self.manifest_path.is_file()

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            if not self.manifest_path.is_file():
                raise ConfigError(f"{self.root}: not a sami-kit run directory (no manifest.json)")
            try:
                self._manifest = json.loads(read_text(self.manifest_path))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{self.manifest_path}: invalid JSON ({exc})") from None
        return self._manifest

    def save_manifest(self) -> None:
        from sami_toolkit.core.secrets import scrub_data

        self.manifest["updated"] = _now()
        # the manifest records argv and plugin errors: a key typed on the command line must not land on disk
        atomic_write_json(self.manifest_path, scrub_data(self.manifest))

    def create(self, *, config: dict[str, Any], config_hash: str, seed: int, principles: dict[str, Any],
               plugins: Iterable[Any] = ()) -> None:
        """Start a new run directory: config.yaml, principles.yaml and a fresh manifest (``plugins``: the plugin
        load records, see :func:`environment_info`)."""
        from sami_toolkit.core.config import redact

        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_yaml(self.config_path, redact(config))
        atomic_write_yaml(self.root / "principles.yaml", principles)
        self._manifest = {
            "manifest_version": MANIFEST_VERSION,
            "created": _now(),
            "config_hash": config_hash,
            "config_file_hash": hash_path(self.config_path),
            "principles_hash": hash_path(self.root / "principles.yaml"),
            "seeds": {"run": seed},
            **environment_info(plugins),
            "status": "running",
            "iterations": {},
        }
        self.save_manifest()

    def recorded_config(self) -> dict[str, Any]:
        """The run's ``config.yaml`` as written when it started (secrets redacted); ``{}`` if it is unreadable."""
        from sami_toolkit.core.config import load_yaml

        try:
            data = load_yaml(self.config_path)
        except ConfigError:
            return {}
        return data if isinstance(data, dict) else {}

    def config_changes(self, payload: dict[str, Any]) -> list[str]:
        """What differs between the recorded config and ``payload`` (a config's ``hash_payload()``: everything but
        ``run_dir``), one ``key: old -> new`` line per dotted key — what a refused ``--resume`` shows; at most
        :data:`MAX_LISTED_CHANGES` lines and a last ``... and N more``."""
        recorded = {k: v for k, v in self.recorded_config().items() if k not in ("run_dir", "report_to")}
        changes = config_changes(recorded, payload)
        if len(changes) > MAX_LISTED_CHANGES:
            changes = [*changes[:MAX_LISTED_CHANGES], f"... and {len(changes) - MAX_LISTED_CHANGES} more"]
        return changes

    def record_resume(self) -> None:
        env = environment_info()
        self.manifest.setdefault("resumes", []).append({"at": _now(), "versions": env["versions"]})
        self.manifest["status"] = "running"
        self.save_manifest()

    def _stages(self, t: int) -> dict[str, Any]:
        return self.manifest["iterations"].setdefault(str(t), {}).setdefault("stages", {})

    def stage_done(self, t: int, stage: str) -> bool:
        return self._stages(t).get(stage, {}).get("status") == "done"

    def mark_done(self, t: int, stage: str, output: Path | None = None, **extra: Any) -> None:
        """Record ``stage`` of iteration ``t`` as finished, with the hash of its output: a file's full sha256, or
        for a directory (the checkpoint) :func:`hash_layout`'s, which does not re-read the weights."""
        entry: dict[str, Any] = {"status": "done", "finished": _now()}
        if output is not None and output.exists():
            entry["output"] = str(output.relative_to(self.root))
            if output.is_dir():
                entry["hash"], entry["hash_scope"] = hash_layout(output), LAYOUT_SCOPE
            else:
                entry["hash"] = hash_path(output)
        entry.update(extra)
        self._stages(t)[stage] = entry
        self.save_manifest()

    def refresh_hash(self, t: int, stage: str) -> None:
        """Re-hash a finished stage's output after a file was added to it on purpose (the model card written into
        the checkpoint after its evaluation), so the manifest keeps describing what is on disk."""
        entry = self._stages(t).get(stage) or {}
        output = self.root / entry["output"] if entry.get("output") else None
        if output is not None and output.exists():
            entry["hash"] = hash_layout(output) if output.is_dir() else hash_path(output)
            self.save_manifest()

    def set_iteration_info(self, t: int, **info: Any) -> None:
        self.manifest["iterations"].setdefault(str(t), {}).update(info)
        self.save_manifest()

    def finish(self) -> None:
        self.manifest["status"] = "complete"
        self.save_manifest()
