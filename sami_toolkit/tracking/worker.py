"""One tracker behind a thread of its own: a tracker that is slow, hangs or fails never slows or stops the run.

Why a thread per tracker and not direct calls: a tracker's library may block for seconds or minutes (``wandb.init``
waiting for a server that is down, an MLflow client retrying a request, a full disk); training must not wait for
it. So the run only *queues* calls (``submit`` never blocks), and the tracker works through them in order on its
own thread, which is also the one thread it is ever called from (MLflow's and Trackio's "current run" live in
thread or context state).

Why a failure disables the tracker instead of being retried: a network outage or an auth error fails every later
call the same way, and a warning per step would bury the run's output. The first exception is reported once (the
message goes through :func:`sami_toolkit.core.secrets.scrub`: an auth error may echo a key) and the tracker is
switched off for the rest of the job; the run carries on and its files are complete without it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from sami_toolkit.core.components import Tracker
from sami_toolkit.core.secrets import scrub

#: calls a tracker may fall behind by before it is switched off (a tracker that cannot keep up is a failure too)
MAX_PENDING = 10_000

_STOP = object()


class TrackerWorker:
    """Runs one tracker's calls, in order, on a daemon thread.

    ``report`` receives each problem once, as one line, from the worker thread (the session prints it from the
    main thread). ``run_id`` is what the tracker's ``start`` returned, once it has returned."""

    def __init__(self, label: str, tracker: Tracker, report: Callable[[str], None], *,
                 max_pending: int = MAX_PENDING) -> None:
        self.label = label
        self.tracker = tracker
        self.run_id: str | None = None
        self.started = threading.Event()
        self._report = report
        self._failed = threading.Event()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._loop, name=f"sami-kit-tracker-{label}", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    def submit(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Queue ``tracker.<method>(*args, **kwargs)``; returns at once (a full queue switches the tracker off)."""
        if self._failed.is_set():
            return
        try:
            self._queue.put_nowait((method, args, kwargs))
        except queue.Full:
            self._fail(f"it fell {self._queue.maxsize} calls behind (the tracker cannot keep up)")

    def close(self, timeout: float) -> bool:
        """Let the queued calls finish, waiting at most ``timeout`` seconds; False if the tracker was still busy
        (it is then abandoned: its thread is a daemon and the run exits without it)."""
        try:
            self._queue.put(_STOP, timeout=max(timeout, 0.001))
        except queue.Full:
            pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._fail(f"it was still busy {timeout:g} s after the job ended; what it had not sent is lost")
            return False
        return not self._failed.is_set()

    # -- the worker thread -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._failed.is_set():
                continue  # drain without calling a tracker that is switched off
            method, args, kwargs = item
            try:
                result = getattr(self.tracker, method)(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - whatever a tracker raises must not reach the run
                self._fail(f"{method}: {type(exc).__name__}: {exc}")
                if method == "start":
                    self.started.set()
                continue
            if method == "start":
                self.run_id = None if result is None else str(result)
                self.started.set()

    def _fail(self, why: str) -> None:
        if self._failed.is_set():
            return
        self._failed.set()
        first_line = scrub(why).strip().splitlines()[0] if why.strip() else why
        self._report(f"tracker '{self.label}' failed and is switched off for the rest of this job ({first_line}); "
                     "the run continues, and its own files are complete without it")
