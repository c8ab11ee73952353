"""``sami-kit push``: upload one iteration's checkpoint, with its model card, to the Hugging Face Hub.

Through ``huggingface_hub`` only (``create_repo``, ``create_branch`` for ``--revision``, one ``upload_folder``
commit), so every mechanism of the Hub client applies: ``HF_ENDPOINT`` for another endpoint, the token of
``HF_TOKEN`` or ``hf auth login``, Xet or LFS for the weights. The token is never printed or written: every
error message goes through :func:`sami_toolkit.core.secrets.scrub` with the token added.

What is uploaded (:func:`plan_push`, which ``--dry-run`` prints): every file of ``iterations/<t>/checkpoint/``,
its ``README.md`` rebuilt with the repository id in the loading example, and with ``--with-report`` the run's
``summary.md``, ``report.html`` and the iteration's ``metrics.json`` under ``sami-kit/``. The files are staged as
hard links in a temporary directory inside the run directory (a copy where links are not possible), so the upload
is one commit and nothing is read twice.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sami_toolkit.core.errors import ConfigError, InfrastructureError
from sami_toolkit.core.io import atomic_write_text, read_json, remove_tree
from sami_toolkit.core.secrets import scrub
from sami_toolkit.hub.model_card import CARD_NAME, build_model_card

#: where the optional run files go in the repository
REPORT_DIR = "sami-kit"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@dataclass
class PushPlan:
    """What ``push`` uploads: ``(local file, path in the repository)`` pairs, the card text and the target."""

    run_dir: Path
    iteration: int
    repo_id: str
    private: bool = False
    revision: str | None = None
    files: list[tuple[Path, str]] = field(default_factory=list)
    card: str = ""

    @property
    def repo_paths(self) -> list[str]:
        return sorted([CARD_NAME, *(dest for _, dest in self.files)])

    def as_json(self) -> dict[str, Any]:
        sizes = {dest: src.stat().st_size for src, dest in self.files}
        sizes[CARD_NAME] = len(self.card.encode("utf-8"))
        return {"repo_id": self.repo_id, "iteration": self.iteration, "private": self.private,
                "revision": self.revision or "main", "run_dir": str(self.run_dir),
                "files": [{"path": p, "bytes": sizes[p]} for p in self.repo_paths]}


def trained_iterations(run_dir: Path) -> list[int]:
    """Iterations whose train stage the manifest marks done and whose checkpoint exists, in order."""
    manifest = read_json(run_dir / "manifest.json", None)
    if not isinstance(manifest, dict):
        raise ConfigError(f"{run_dir}: not a sami-kit run directory (no manifest.json)")
    done = []
    for key, info in (manifest.get("iterations") or {}).items():
        stage = ((info or {}).get("stages") or {}).get("train") or {}
        if key.isdigit() and stage.get("status") == "done" and (run_dir / "iterations" / key / "checkpoint").is_dir():
            done.append(int(key))
    return sorted(done)


def plan_push(run_dir: str | Path, *, repo_id: str, iteration: int | None = None, with_report: bool = False,
              private: bool = False, revision: str | None = None) -> PushPlan:
    """Decide what to upload; raises ConfigError (exit 2) for a bad repo id or an iteration without checkpoint."""
    root = Path(run_dir)
    if not _REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".git", "-", ".")):
        raise ConfigError(f"--repo-id {repo_id!r} is not a Hub repository id", hint="use USER/NAME or ORG/NAME "
                          "(letters, digits, '-', '_' and '.')")
    done = trained_iterations(root)
    if not done:
        raise ConfigError(f"{root}: no iteration has a finished checkpoint yet", hint="push after an iteration's "
                          "train stage finished (see `sami-kit report`)")
    t = done[-1] if iteration is None else iteration
    if t not in done:
        raise ConfigError(f"{root}: iteration {t} has no finished checkpoint; trained iterations: "
                          f"{', '.join(map(str, done))}")
    checkpoint = root / "iterations" / str(t) / "checkpoint"
    files = [(p, p.relative_to(checkpoint).as_posix()) for p in sorted(checkpoint.rglob("*"))
             if p.is_file() and p.relative_to(checkpoint).as_posix() != CARD_NAME]
    if with_report:
        for source in (root / "summary.md", root / "report.html", checkpoint.parent / "metrics.json"):
            if source.is_file():
                files.append((source, f"{REPORT_DIR}/{source.name}"))
    card = str(build_model_card(root, t, repo_id=repo_id))
    return PushPlan(run_dir=root, iteration=t, repo_id=repo_id, private=private, revision=revision, files=files,
                    card=card)


def _stage(plan: PushPlan, staging: Path) -> None:
    for source, dest in plan.files:
        target = staging / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:  # another filesystem, or links not allowed: copy
            shutil.copyfile(source, target)
    atomic_write_text(staging / CARD_NAME, plan.card)


def _token() -> str:
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise ConfigError("HF_HUB_OFFLINE is set, so huggingface_hub refuses to upload",
                          hint="unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) for `sami-kit push`")
    token = get_token()
    if not token:
        raise ConfigError("no Hugging Face token: `sami-kit push` needs one with write access",
                          hint="set HF_TOKEN, or run `hf auth login`")
    return token


def _error(exc: Exception, token: str, repo_id: str) -> Exception:
    """A Hub failure as a sami-kit error: a rejected token or a refused repository is the user's to fix (exit 2),
    anything else — the network, the server — is infrastructure (exit 4). The message never holds the token."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    message = scrub(f"{type(exc).__name__}: {exc}", extra=[token]).strip().splitlines()[0]
    if status in (401, 403):
        return ConfigError(f"the Hub refused the upload to {repo_id} (HTTP {status}): {message}",
                           hint="check that the token (HF_TOKEN or `hf auth login`) has write access to that "
                                "namespace")
    if status == 404:
        return ConfigError(f"{repo_id} was not found on the Hub (HTTP 404): {message}",
                           hint="check --repo-id (and --revision)")
    return InfrastructureError(f"uploading to {repo_id} failed: {message}")


def push(plan: PushPlan) -> str:
    """Upload ``plan``; returns the commit URL (or the repository URL when nothing changed)."""
    from huggingface_hub import HfApi

    token = _token()
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    staging = plan.run_dir / f".push-staging-{os.getpid()}"
    remove_tree(staging)
    try:
        repo = api.create_repo(plan.repo_id, private=plan.private or None, exist_ok=True, repo_type="model")
        if plan.revision and plan.revision != "main":
            api.create_branch(plan.repo_id, branch=plan.revision, exist_ok=True, repo_type="model")
        _stage(plan, staging)
        info = api.upload_folder(repo_id=plan.repo_id, folder_path=str(staging), repo_type="model",
                                 revision=plan.revision,
                                 commit_message=f"sami-kit: iteration {plan.iteration} of {plan.run_dir.name}")
    except (ConfigError, InfrastructureError):
        raise
    except Exception as exc:  # noqa: BLE001 - HTTP and network errors of huggingface_hub/httpx
        raise _error(exc, token, plan.repo_id) from None
    finally:
        remove_tree(staging)
    return str(getattr(info, "commit_url", None) or repo)
