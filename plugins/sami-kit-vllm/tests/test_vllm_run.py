"""``sami-kit run`` with the ``vllm`` sampler and the ``mi-vllm`` evaluator, through the real entry points.

With the fake (default) these run in the core environment; with ``SAMI_KIT_REAL_VLLM=1`` (``.venv-vllm``) the
same runs use the real CPU vLLM, and the tests also check that no engine process outlives the run: after
success, after an error (a prompt longer than ``max_model_len``: exit 2 with vLLM's numbers) and after Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest_paths import FAKE_DIR, REAL_VLLM, engine_processes, wait_for_no_engine_processes

WORDS = "The cat sat on the mat . I have a question about my landlord , my job , my friend and my dog .".split()

#: engine options of every run here: float32 (vLLM and transformers agree), no compilation (faster start)
ENGINE = {"dtype": "float32", "enforce_eager": True, "gpu_memory_utilization": 0.3, "max_model_len": 512}


def _posts(tmp_path: Path, n: int = 12) -> Path:
    import random

    rng = random.Random(0)
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": f"p{i}", "text": " ".join(rng.choice(WORDS) for _ in range(12))})
                             + "\n" for i in range(n)))
    return posts


def _demo_overrides(tmp_path: Path, model_dir: Path, **engine: object) -> list[str]:
    """``sami-kit run --preset demo`` shrunk to seconds of work: the tiny model, 4 training and 2 held-out posts,
    one iteration, the vllm sampler and the mi-vllm evaluator, the torch trainer, no evaluation at t = 0 (every
    engine start costs ~1-2 min on 2 CPU cores: this run starts two, base model and iteration-1 checkpoint)."""
    opts = {**ENGINE, **engine}
    sampler = {"name": "vllm", "options": {"max_new_tokens": 8, "batch_size": 64, **opts}}
    evaluator = {"name": "mi-vllm", "options": opts}
    return ["--preset", "demo", "--run-dir", str(tmp_path / "run"),
            "-o", f"model={model_dir}", "-o", f"data.source.options.path={_posts(tmp_path)}",
            "-o", "data.pool_size=4", "-o", "eval.size=2", "-o", "eval.at_iteration_zero=false",
            "-o", f"sampler={json.dumps(sampler)}", "-o", f"evaluators.0={json.dumps(evaluator)}",
            "-o", "filter.require_distinct=false", "-o", "iterations=1", "-o", "batches_per_iteration=1",
            "-o", "batch_size=2", "-o", "trainer.name=torch", "-o", "train.micro_batch_size=2"]


def _start(args: list[str], *, fake: bool, **popen: object) -> subprocess.Popen:
    env = dict(os.environ)
    if fake:
        env["PYTHONPATH"] = os.pathsep.join([str(FAKE_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = "import sys; from sami_toolkit.cli import main; main(sys.argv[1:])"
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **popen)  # type: ignore[arg-type]


def _run(args: list[str], *, fake: bool) -> subprocess.CompletedProcess:
    """Run the CLI to completion, recording every engine process it started (to check none outlives it)."""
    proc = _start(args, fake=fake)
    seen: set[int] = set()
    out: dict[str, str] = {}
    import threading

    readers = [threading.Thread(target=lambda n=n, s=s: out.__setitem__(n, s.read()), daemon=True)
               for n, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    deadline = time.monotonic() + 900
    while proc.poll() is None and time.monotonic() < deadline:
        seen.update(engine_processes(under=proc.pid))
        time.sleep(0.5)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for r in readers:
        r.join(10)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out.get("stdout", ""), out.get("stderr", ""))
    result.engine_pids = seen  # type: ignore[attr-defined]
    return result


@pytest.mark.skipif(REAL_VLLM, reason="vLLM is installed")
def test_run_without_vllm_exits_4_with_the_install_hint(vllm_model_dir: Path, tmp_path: Path) -> None:
    result = _run(["run", *_demo_overrides(tmp_path, vllm_model_dir)], fake=False)
    assert result.returncode == 4, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors and "vLLM backend is not available" in errors[0]
    assert "docs/vllm.md" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_demo_run_samples_trains_and_evaluates_with_vllm(vllm_model_dir: Path, tmp_path: Path) -> None:
    result = _run(["run", *_demo_overrides(tmp_path, vllm_model_dir)], fake=not REAL_VLLM)
    assert result.returncode == 0, result.stderr[-3000:]
    it1 = tmp_path / "run" / "iterations" / "1"
    metrics = json.loads((it1 / "metrics.json").read_text())
    assert metrics["mi_scorer"] == "vllm" and metrics["mi_n_queries"] + metrics["mi_skipped_queries"] == 2
    samples = (it1 / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 8  # 4 queries x C = 2 responses, from the vllm sampler
    train = json.loads((it1 / "train.json").read_text())
    assert train["metrics"], "training ran after vLLM sampling"
    if REAL_VLLM:
        assert result.engine_pids, "the real engine should have run in processes of its own"
        # every engine process the run started is gone once the run is (success path)
        assert not wait_for_no_engine_processes(result.engine_pids, timeout=5)


@pytest.mark.slow
def test_too_long_prompt_in_a_run_is_exit_2_with_the_numbers(vllm_model_dir: Path, tmp_path: Path) -> None:
    """The TL;DR generation prompt is ~300 tokens; with max_model_len 64 vLLM rejects it: a config error (exit 2)
    naming both lengths, never a traceback, and no engine process left behind (error path)."""
    result = _run(["run", *_demo_overrides(tmp_path, vllm_model_dir, max_model_len=64)], fake=not REAL_VLLM)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors and "vLLM rejected a request" in errors[0], result.stderr[-2000:]
    assert "64" in errors[0] and any(ch.isdigit() for ch in errors[0].replace("64", "")), errors[0]
    assert "max_model_len (now 64)" in result.stderr and "Traceback" not in result.stderr
    if REAL_VLLM:
        assert result.engine_pids
        assert not wait_for_no_engine_processes(result.engine_pids, timeout=15)


@pytest.mark.slow
@pytest.mark.skipif(not REAL_VLLM, reason="the engine processes exist only with the real vLLM")
def test_ctrl_c_while_the_engine_starts_leaves_no_engine_process(vllm_model_dir: Path, tmp_path: Path) -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the run, vLLM's engine core and its
    worker. The run must exit 130 with its 'Interrupted' message and take every engine process with it."""
    proc = _start(["run", *_demo_overrides(tmp_path, vllm_model_dir)], fake=False, start_new_session=True)
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 400
        while proc.poll() is None and time.monotonic() < deadline:
            seen.update(engine_processes(under=proc.pid))
            if any(title.startswith("VLLM::Worker") for title in engine_processes(under=proc.pid).values()):
                break  # the engine core and its worker are up; the model is loading
            time.sleep(0.25)
        assert proc.poll() is None and seen, "the engine never started"
        time.sleep(2)
        seen.update(engine_processes(under=proc.pid))
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail("the run ignored Ctrl-C for 90 s (vLLM's start-up wait was not interrupted)")
        assert proc.returncode == 130, stderr[-3000:]
        assert time.monotonic() - started < 60
        assert "Interrupted" in stderr, stderr[-3000:]
        # vLLM's engine core logs its own "cancelled" traceback on SIGINT; the run itself prints none
        assert "sami_toolkit/" not in stderr and "sami_kit_vllm/" not in stderr, stderr[-3000:]
        assert not wait_for_no_engine_processes(seen, timeout=20), "an engine process outlived the interrupted run"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
