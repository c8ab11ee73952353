"""The trackers of one job (a run, or one ``eval compare``), fanned out from the calls the job makes.

What it guarantees, whichever trackers are configured (``report_to``):

* **rank 0 only** — in a multi-process launch (DeepSpeed, torchrun) every rank runs the loop; only the process whose
  ``RANK`` is 0 (or unset) opens trackers, the others get a session that does nothing;
* **one step axis** — the global optimizer step across iterations (iteration t's local step s is
  ``B_1 + … + B_{t-1} + s``, spec §2.1's B_η = η·N_b), with the iteration as a series of its own; per-iteration
  values are logged at the iteration's last step (iteration 0, the base model, at step 0);
* **resume continues the same tracker run** — a stable ``uid`` and every tracker's run id are kept in the job's
  state (the run manifest's ``tracking`` entry) and handed back to ``Tracker.start`` after a ``--resume``;
* **no step logged twice** — the highest step handed to the trackers, and every per-iteration record, table and
  artifact, is written to that state *before* it is sent, so a resumed run (which retrains an unfinished iteration
  from its first step) skips what was already sent. The price is at-most-once: calls still queued when the process
  is SIGKILLed are lost, never repeated;
* **a failing tracker never stops or slows the run** — each tracker works on its own thread
  (:class:`~sami_toolkit.tracking.worker.TrackerWorker`); a failure is reported once, here, from the main thread.

Step records are buffered and sent at most once per ``flush_seconds`` (and at every iteration boundary), so a
fast tiny-model run does not write the manifest at every step.
"""

from __future__ import annotations

import collections
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, Sequence

from sami_toolkit.core.records import TrackedRun
from sami_toolkit.tracking.worker import TrackerWorker

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.core.components import TrackerStatus
    from sami_toolkit.core.run_dir import RunDir
    from sami_toolkit.plugins.registry import Registry

#: environment variables that carry a process's global rank, first match wins (torchrun/DeepSpeed, Open MPI, MPICH)
RANK_VARIABLES = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
#: the manifest key of a run's tracking state
MANIFEST_KEY = "tracking"


def process_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's global rank in a multi-process launch (0 when not launched that way)."""
    env = os.environ if environ is None else environ
    for name in RANK_VARIABLES:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0


@dataclass(frozen=True)
class StepAxis:
    """The global optimizer step: ``steps(t)`` is iteration t's number of optimizer steps (t ≥ 1)."""

    steps: Callable[[int], int]

    def offset(self, t: int) -> int:
        return sum(self.steps(u) for u in range(1, t))

    def step(self, t: int, local_step: int) -> int:
        return self.offset(t) + local_step

    def end(self, t: int) -> int:
        """The step at which iteration ``t``'s values are logged: its last optimizer step (0 for the base model)."""
        return 0 if t <= 0 else self.offset(t) + self.steps(t)


class StateStore(Protocol):
    """Where a job's tracking state lives between processes."""

    def load(self) -> dict[str, Any]: ...

    def save(self, state: dict[str, Any]) -> None: ...


class MemoryState:
    """State that lives as long as the process (``eval compare``: nothing to resume)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def load(self) -> dict[str, Any]:
        return dict(self.state)

    def save(self, state: dict[str, Any]) -> None:
        self.state = dict(state)


class ManifestState:
    """A run's tracking state, under ``tracking`` in its ``manifest.json`` (saved atomically with the rest)."""

    def __init__(self, run: "RunDir") -> None:
        self.run = run

    def load(self) -> dict[str, Any]:
        return dict(self.run.manifest.get(MANIFEST_KEY) or {})

    def save(self, state: dict[str, Any]) -> None:
        self.run.manifest[MANIFEST_KEY] = state
        self.run.save_manifest()


def _labels(names: Sequence[str]) -> list[str]:
    """One label per configured tracker: its name, numbered when a name is configured twice."""
    seen: collections.Counter[str] = collections.Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def _ref(ref: Any) -> tuple[str, dict[str, Any]]:
    """``(name, options)`` of a ``report_to`` entry: a name, a mapping or an object with ``name``/``options``."""
    if isinstance(ref, str):
        return ref, {}
    if isinstance(ref, Mapping):
        return str(ref["name"]), dict(ref.get("options") or {})
    return str(ref.name), dict(getattr(ref, "options", None) or {})


class TrackingSession:
    """Fans one job's metrics, tables and artifacts out to its trackers (see the module docstring)."""

    def __init__(self, workers: Sequence[TrackerWorker] = (), *, store: StateStore | None = None,
                 state: dict[str, Any] | None = None, axis: StepAxis | None = None,
                 report: Callable[[str], None] | None = None, flush_seconds: float = 1.0,
                 close_timeout: float = 60.0) -> None:
        self.workers = list(workers)
        self.store = store or MemoryState()
        self.state: dict[str, Any] = state if state is not None else self.store.load()
        self.state.setdefault("trackers", {})
        self.state.setdefault("step", -1)
        self.state.setdefault("logged", [])
        self.axis = axis or StepAxis(lambda t: 0)
        self.report = report or (lambda line: None)
        self.flush_seconds = flush_seconds
        self.close_timeout = close_timeout
        self.problems: collections.deque[str] = collections.deque()
        self._pending: list[tuple[int, dict[str, float]]] = []
        self._last_flush = time.monotonic()
        self._finished = False

    # -------------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, refs: Iterable[Any], registry: "Registry", *, name: str, directory: str | Path,
             config: Mapping[str, Any], job: str = "run", store: StateStore | None = None,
             axis: StepAxis | None = None, report: Callable[[str], None] | None = None, tags: Sequence[str] = (),
             rank: int | None = None, **options: Any) -> "TrackingSession":
        """Build the configured trackers (options validated now, on the calling thread) and start each on its own
        thread; a process of rank > 0, or an empty ``refs``, gets a session that does nothing."""
        pairs = [_ref(ref) for ref in refs]
        store = store or MemoryState()
        if not pairs or (process_rank() if rank is None else rank) != 0:
            return cls(store=MemoryState(), axis=axis, report=report, **options)
        trackers = [registry.create("trackers", tracker_name, tracker_options, where=f"report_to[{i}].options")
                    for i, (tracker_name, tracker_options) in enumerate(pairs)]
        state = store.load()
        resumed = "uid" in state
        state.setdefault("uid", secrets.token_hex(6))
        session = cls(store=store, state=state, axis=axis, report=report, **options)
        for label, tracker in zip(_labels([n for n, _ in pairs]), trackers):
            worker = TrackerWorker(label, tracker, session.problems.append)
            known = session.state["trackers"].get(label, {})
            info = TrackedRun(name=name, directory=Path(directory), job=job,  # type: ignore[arg-type]
                              uid=session.state["uid"], resumed=resumed, resume_id=known.get("id"),
                              tags=tuple(tags))
            worker.submit("start", info, dict(config))
            session.workers.append(worker)
        session._save()
        return session

    @property
    def enabled(self) -> bool:
        return any(not w.failed for w in self.workers)

    # -------------------------------------------------------------------------------------------- logging
    def log_step(self, t: int, local_step: int, series: Mapping[str, float]) -> None:
        """One optimizer step of iteration ``t`` (buffered; sent within ``flush_seconds``)."""
        if not self.workers:
            return
        step = self.axis.step(t, local_step)
        if step <= self.state["step"] or (self._pending and step <= self._pending[-1][0]):
            return  # sent before a --resume (or repeated): never twice
        self._pending.append((step, dict(series)))
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def log_once(self, key: str, step: int, series: Mapping[str, float]) -> None:
        """Numeric series at ``step``, sent once per job under ``key`` (e.g. ``iteration:2``)."""
        if self._claim(key):
            self._send("log_metrics", step, dict(series))

    def log_table(self, key: str, name: str, rows: Sequence[Mapping[str, Any]], *, step: int) -> None:
        if rows and self._claim(key):
            self._send("log_table", name, [dict(r) for r in rows], step=step)

    def log_artifact(self, key: str, path: str | Path, *, name: str | None = None) -> None:
        path = Path(path)
        if path.is_file() and self._claim(key):
            self._send("log_artifact", path, name=name)

    def flush(self) -> None:
        """Send the buffered steps (their highest step is recorded first) and any new tracker run ids."""
        self._last_flush = time.monotonic()
        if self._pending:
            pending, self._pending = self._pending, []
            self.state["step"] = max(self.state["step"], pending[-1][0])
            self._save()
            for step, series in pending:
                for worker in self.workers:
                    worker.submit("log_metrics", step, series)
        self._sync_ids()
        self._print_problems()

    def finish(self, status: "TrackerStatus" = "success") -> None:
        """Flush, close every tracker's run with ``status`` and wait for them (at most ``close_timeout`` s in all)."""
        if self._finished or not self.workers:
            self._finished = True
            return
        self._finished = True
        self.flush()
        for worker in self.workers:
            worker.submit("finish", status)
        deadline = time.monotonic() + self.close_timeout
        for worker in self.workers:
            worker.close(max(0.0, deadline - time.monotonic()))
        self._sync_ids()
        self._print_problems()

    def __enter__(self) -> "TrackingSession":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.finish("success")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("interrupted")
        else:
            self.finish("failed")

    # ------------------------------------------------------------------------------------------- internals
    def _claim(self, key: str) -> bool:
        """Record ``key`` as sent (before sending it); False if it was sent before, or there is nobody to tell."""
        if not self.workers or key in self.state["logged"]:
            return False
        self.flush()  # steps before this record keep their order
        self.state["logged"].append(key)
        self._save()
        return True

    def _send(self, method: str, *args: Any, **kwargs: Any) -> None:
        for worker in self.workers:
            worker.submit(method, *args, **kwargs)
        self._print_problems()

    def _sync_ids(self) -> None:
        changed = False
        for worker in self.workers:
            known = self.state["trackers"].setdefault(worker.label, {})
            if worker.run_id is not None and known.get("id") != worker.run_id:
                known["id"] = worker.run_id
                changed = True
        if changed:
            self._save()

    def _save(self) -> None:
        if self.workers:
            self.store.save(self.state)

    def _print_problems(self) -> None:
        while self.problems:
            self.report(self.problems.popleft())
