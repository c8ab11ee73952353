"""The tracking fan-out (sami_toolkit.tracking): rank 0 only, the global step axis, a failing or hanging tracker
reported once and never stopping or slowing the job, resume continuing the same tracker run, no step sent twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from sami_toolkit import hookimpl
from sami_toolkit.core.components import ComponentOptions, Tracker
from sami_toolkit.core.errors import ConfigError
from sami_toolkit.tracking import missing_library
from sami_toolkit.tracking.series import iteration_series, step_series
from sami_toolkit.tracking.session import MemoryState, StepAxis, TrackingSession, process_rank
from sami_toolkit.tracking.tables import sample_rows


class RecordingTracker(Tracker):
    """Keeps every call, per instance, in a class-level log (the session builds instances itself)."""

    name = "recording"
    log: ClassVar[list[tuple[str, Any]]] = []
    starts: ClassVar[list[Any]] = []

    class Options(ComponentOptions):
        fail_on: str | None = None
        delay: float = 0.0

    def start(self, run, config):
        self._call("start", run)
        RecordingTracker.starts.append(run)
        return run.resume_id or f"id-{run.uid}"

    def log_metrics(self, step, metrics):
        self._call("metrics", (step, dict(metrics)))

    def log_table(self, name, rows, *, step):
        self._call("table", (name, step, list(rows)))

    def log_artifact(self, path, *, name=None):
        self._call("artifact", Path(path).name)

    def finish(self, status):
        self._call("finish", status)

    def _call(self, kind: str, value: Any) -> None:
        time.sleep(self.options.delay)
        if self.options.fail_on == kind:
            raise ConnectionError("tracker server unreachable (Authorization: Bearer sk-abcdef1234567890)")
        RecordingTracker.log.append((kind, value))


class NeedsLibrary(RecordingTracker):
    name = "needs-lib"
    requires = ("surely_not_an_installed_module_xyz",)
    install = "pip install 'sami-kit[xyz]'"


class TrackerPlugin:
    @hookimpl
    def register_trackers(self, register):
        register(RecordingTracker)
        register(NeedsLibrary)


@pytest.fixture
def registry(sami_kit_registry, sami_kit_register_plugin):
    sami_kit_register_plugin(TrackerPlugin(), "recording-trackers")
    RecordingTracker.log.clear()
    RecordingTracker.starts.clear()
    return sami_kit_registry


def _open(registry, refs, store=None, *, axis=None, report=None, **kw):
    return TrackingSession.open(refs, registry, name="tiny", directory="/tmp/run", config={"lr": 1e-3},
                                store=store or MemoryState(), axis=axis or StepAxis(lambda t: 2 * t),
                                report=report, flush_seconds=0.0, **kw)


def _metrics() -> list[tuple[int, dict]]:
    return [value for kind, value in RecordingTracker.log if kind == "metrics"]


def test_the_step_axis_is_the_global_optimizer_step():
    axis = StepAxis(lambda t: 3 * t)  # B_t = t * N_b with N_b = 3 (spec §2.1)
    assert [axis.step(1, s) for s in (1, 2, 3)] == [1, 2, 3]
    assert [axis.step(2, s) for s in (1, 6)] == [4, 9]
    assert axis.step(3, 1) == 10
    assert (axis.end(0), axis.end(1), axis.end(2)) == (0, 3, 9)


def test_series_names_and_values():
    record = {"step": 3, "loss": 0.5, "loss_row": 0.4, "loss_col": 0.6, "lr": 1e-3, "grad_norm": 2.0,
              "seconds": 0.5, "tokens": 100}
    series = step_series(record, iteration=2)
    assert series == {"train/loss": 0.5, "train/loss_row": 0.4, "train/loss_col": 0.6, "train/lr": 1e-3,
                      "train/grad_norm": 2.0, "train/seconds": 0.5, "train/tokens": 100.0,
                      "train/tokens_per_s": 200.0, "iteration": 2.0}
    metrics = {"iteration": 1, "steps": 2, "mi_infonce_constitutions": 0.3, "mi_infonce_constitutions_sem": 0.01,
               "mi_scorer": "transformers", "judge_health_vs_base": {"failure_rate": 0.0, "first_position_rate": None,
                                                                     "warnings": ["shared family"]},
               "pairs_kept": 4, "dropped_by_reason": {"empty": 1}}
    numbers, notes = iteration_series(1, metrics, pairs={"queries": 5, "kept": 4, "dropped": 1,
                                                         "dropped_by_reason": {"empty": 1}},
                                      durations={"train": 1.5}, texts={"train/precision": "fp32"})
    assert numbers == {"iteration": 1.0, "pairs/queries": 5.0, "pairs/kept": 4.0, "pairs/dropped": 1.0,
                       "pairs/dropped/empty": 1.0, "eval/mi_infonce_constitutions": 0.3,
                       "eval/mi_infonce_constitutions_sem": 0.01, "eval/judge_health_vs_base/failure_rate": 0.0,
                       "time/train_s": 1.5}
    assert {(n["key"], n["value"]) for n in notes} == {("eval/mi_scorer", "transformers"),
                                                       ("eval/judge_health_vs_base/warnings", "shared family"),
                                                       ("train/precision", "fp32")}


def test_fan_out_sends_everything_in_order(registry, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("# run\n")
    session = _open(registry, ["recording", {"name": "recording", "options": {}}])
    assert [w.label for w in session.workers] == ["recording", "recording#2"]
    session.log_step(1, 1, {"train/loss": 1.0})
    session.log_step(1, 2, {"train/loss": 0.9})
    session.log_once("iteration:1", session.axis.end(1), {"eval/x": 0.5})
    session.log_table("table:samples:1", "samples/heldout", [{"q": "a"}], step=2)
    session.log_artifact("artifact:end:summary.md", summary)
    session.finish("success")
    per_tracker = [kind for kind, _ in RecordingTracker.log]
    assert per_tracker.count("start") == 2 and per_tracker.count("finish") == 2
    assert sorted(map(repr, _metrics())) == sorted(map(repr, [(1, {"train/loss": 1.0}), (2, {"train/loss": 0.9}),
                                                              (2, {"eval/x": 0.5})] * 2))
    assert session.state["trackers"]["recording"]["id"].startswith("id-")
    assert session.state["step"] == 2


def test_only_rank_zero_opens_trackers(registry, monkeypatch):
    assert process_rank({"RANK": "3"}) == 3 and process_rank({}) == 0 and process_rank({"PMI_RANK": "1"}) == 1
    monkeypatch.setenv("RANK", "1")
    store = MemoryState()
    session = _open(registry, ["recording"], store)
    session.log_step(1, 1, {"train/loss": 1.0})
    session.log_once("iteration:1", 2, {"eval/x": 0.5})
    session.finish()
    assert RecordingTracker.log == [] and store.state == {}
    monkeypatch.setenv("RANK", "0")
    session = _open(registry, ["recording"])
    session.finish()
    assert [kind for kind, _ in RecordingTracker.log] == ["start", "finish"]


def test_a_failing_tracker_is_reported_once_and_the_others_carry_on(registry):
    lines: list[str] = []
    session = _open(registry, [{"name": "recording", "options": {"fail_on": "metrics"}}, "recording"],
                    report=lines.append)
    for step in range(1, 6):
        session.log_step(1, step, {"train/loss": 1.0 / step})
    session.finish("success")
    assert len(lines) == 1, lines
    assert "tracker 'recording' failed" in lines[0] and "ConnectionError" in lines[0] and "the run continues" in lines[0]
    assert "sk-abcdef1234567890" not in lines[0]  # scrubbed
    assert len(_metrics()) == 5  # the healthy tracker got every step


def test_a_slow_or_hanging_tracker_never_slows_the_job(registry):
    lines: list[str] = []
    session = _open(registry, [{"name": "recording", "options": {"delay": 0.5}}], report=lines.append,
                    close_timeout=0.2)
    started = time.perf_counter()
    for step in range(1, 21):
        session.log_step(1, step, {"train/loss": 1.0})
    session.log_once("iteration:1", 20, {"eval/x": 1.0})
    logging_took = time.perf_counter() - started
    session.finish()
    total = time.perf_counter() - started
    assert logging_took < 0.2, logging_took  # 21 calls queued; the tracker would need > 10 s
    assert total < 1.5, total  # finish waits close_timeout at most, then abandons the tracker
    assert len(lines) == 1 and "still busy" in lines[0]


def test_a_tracker_that_fails_to_start_is_switched_off(registry):
    lines: list[str] = []
    session = _open(registry, [{"name": "recording", "options": {"fail_on": "start"}}], report=lines.append)
    session.log_step(1, 1, {"train/loss": 1.0})
    session.finish()
    assert RecordingTracker.log == [] and len(lines) == 1 and "start: ConnectionError" in lines[0]


def test_resume_continues_the_same_tracker_run_and_sends_no_step_twice(registry):
    store = MemoryState()
    first = _open(registry, ["recording"], store)
    for step in (1, 2):  # iteration 1 (2 steps) done
        first.log_step(1, step, {"train/loss": float(step)})
    first.log_once("iteration:1", 2, {"eval/x": 1.0})
    first.workers[0].started.wait(5)
    first.log_step(2, 1, {"train/loss": 3.0})  # iteration 2 killed after its first step (its id is recorded)
    first.flush()
    first.workers[0].close(5)  # the process dies: no finish
    uid = store.state["uid"]
    run_id = store.state["trackers"]["recording"]["id"]

    second = _open(registry, ["recording"], store)
    second.log_once("iteration:1", 2, {"eval/x": 1.0})  # the resumed loop passes iteration 1 again
    for step in (1, 2, 3, 4):  # iteration 2 is retrained from its first step
        second.log_step(2, step, {"train/loss": 10.0 + step})
    second.finish()
    starts = RecordingTracker.starts
    assert [s.uid for s in starts] == [uid, uid]
    assert (starts[0].resumed, starts[0].resume_id) == (False, None)
    assert (starts[1].resumed, starts[1].resume_id) == (True, run_id)
    steps = [step for step, series in _metrics() if "train/loss" in series]
    assert steps == [1, 2, 3, 4, 5, 6] and len(steps) == len(set(steps))
    assert [series for step, series in _metrics() if "eval/x" in series] == [{"eval/x": 1.0}]


def test_a_resume_before_the_first_start_reported_back_looks_the_run_up_by_uid(registry):
    store = MemoryState()
    store.save({"uid": "abc123", "trackers": {}, "step": -1, "logged": []})
    session = _open(registry, ["recording"], store)
    session.finish()
    assert (RecordingTracker.starts[0].uid, RecordingTracker.starts[0].resumed) == ("abc123", True)


def test_steps_are_buffered_and_flushed(registry):
    session = TrackingSession.open(["recording"], registry, name="t", directory="/tmp", config={},
                                   axis=StepAxis(lambda t: 10), flush_seconds=3600)
    for step in (1, 2, 3):
        session.log_step(1, step, {"train/loss": 1.0})
    time.sleep(0.2)
    assert _metrics() == []  # buffered: no manifest write per step
    session.log_once("iteration:1", 10, {"eval/x": 1.0})  # an iteration boundary flushes first, keeping order
    session.finish()
    assert [step for step, _ in _metrics()] == [1, 2, 3, 10]


def test_tracker_options_are_validated_on_the_calling_thread(registry):
    with pytest.raises(ConfigError) as excinfo:
        _open(registry, [{"name": "recording", "options": {"fail_onn": "x"}}])
    assert "report_to[0].options" in str(excinfo.value)


def test_a_missing_library_names_the_pip_command(registry):
    tracker = registry.create("trackers", "needs-lib")
    problem, hint = missing_library(tracker)
    assert "surely_not_an_installed_module_xyz" in problem and hint == "pip install 'sami-kit[xyz]'"
    assert missing_library(registry.create("trackers", "recording")) is None


def test_sample_tables_come_from_the_evaluators_files(tmp_path):
    from sami_toolkit.core.io import atomic_write_jsonl

    atomic_write_jsonl(tmp_path / "eval" / "mi.jsonl",
                       [{"id": f"q{i}", "query": f"query {i}", "constitutions": ["+", "-"],
                         "responses": [f"good {i}", f"bad {i}"]} for i in range(5)])
    rows = sample_rows(tmp_path, 2, k=2)
    assert [(r["query_id"], r["constitution"], r["response"]) for r in rows] == [
        ("q0", "+", "good 0"), ("q0", "-", "bad 0"), ("q1", "+", "good 1"), ("q1", "-", "bad 1")]
    assert all(r["iteration"] == 2 for r in rows)
    assert sample_rows(tmp_path / "nothing", 1) == []


def test_worker_threads_do_not_outlive_the_session(registry):
    before = {t.name for t in threading.enumerate()}
    session = _open(registry, ["recording"])
    session.finish()
    time.sleep(0.05)
    leftover = {t.name for t in threading.enumerate()} - before
    assert not any(name.startswith("sami-kit-tracker") for name in leftover)


def test_the_documented_tracker_plugin_works(sami_kit_registry, sami_kit_register_plugin, tmp_path):
    """docs/tracking.md's "Writing a tracker plugin" example, run as written."""
    import json
    import types

    doc = (Path(__file__).resolve().parents[1] / "docs" / "tracking.md").read_text(encoding="utf-8")
    code = doc.split("## Writing a tracker plugin", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    module = types.ModuleType("doc_tracker_plugin")
    exec(compile(code, "docs/tracking.md", "exec"), module.__dict__)
    sami_kit_register_plugin(module, "doc-tracker")
    session = TrackingSession.open(["jsonl-log"], sami_kit_registry, name="t", directory=tmp_path, config={},
                                   axis=StepAxis(lambda t: 2), flush_seconds=0.0)
    session.log_step(1, 1, {"train/loss": 0.5})
    session.log_table("table:1", "samples/heldout", [{"q": "a"}], step=2)
    session.finish()
    lines = [json.loads(line) for line in (tmp_path / "tracking.jsonl").read_text().splitlines()]
    assert lines == [{"step": 1, "train/loss": 0.5}, {"step": 2, "table": "samples/heldout", "rows": [{"q": "a"}]}]
