"""Run-directory I/O (design.md §5): atomic writes, crash-safe JSONL appends, and the run manifest.

A run can be killed at any moment (SIGKILL included) and resumed, so every file is either complete or absent:

* whole files (JSON, YAML, pairs) are written to a temporary file in the same directory, fsynced, then
  ``os.replace``-d over the target — readers never see half a file;
* samples are appended one JSONL line at a time and fsynced; a kill can only tear the *last* line, which
  :func:`sami_toolkit.core.io.read_jsonl_tolerant` detects (no trailing newline or invalid JSON) and :func:`repair_jsonl` truncates away;
* the manifest records each stage's status and the content hash of its output, so a resumed run skips finished
  stages and can tell a finished stage from a file that merely exists.

Layout::

    <run>/config.yaml  manifest.json  principles.yaml  summary.md
    <run>/iterations/<t>/samples.jsonl  pairs.jsonl  checkpoint/  metrics.json  eval/
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.io import atomic_write_json, atomic_write_yaml, hash_path

MANIFEST_VERSION = 1


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
