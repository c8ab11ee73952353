"""``sami-kit run`` with the ``vllm`` sampler and the ``mi-vllm`` evaluator, through the real entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest_paths import FAKE_DIR, REAL_VLLM

WORDS = "The cat sat on the mat . I have a question about my landlord , my job , my friend and my dog .".split()


def _write_run(tmp_path: Path, model_dir: Path) -> Path:
    import random

    rng = random.Random(0)
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": f"p{i}", "text": " ".join(rng.choice(WORDS) for _ in range(12))}) + "\n"
                             for i in range(12)))
    engine = {"dtype": "float32", "enforce_eager": True, "gpu_memory_utilization": 0.3}
    config = {
        "name": "vllm-smoke", "seed": 1, "model": str(model_dir), "task": "tldr", "principles": "tldr-mistral",
        "data": {"source": {"name": "jsonl", "options": {"path": str(posts)}}, "pool_size": 4},
        "eval": {"size": 2, "at_iteration_zero": False},
        "sampler": {"name": "vllm", "options": {"max_new_tokens": 8, "batch_size": 64, **engine}},
        "filter": {"require_positive_period": False, "require_distinct": False},
        "iterations": 1, "batches_per_iteration": 1, "batch_size": 2,
        "trainer": {"name": "torch"}, "train": {"micro_batch_size": 2, "device": "cpu"},
        "evaluators": [{"name": "mi-vllm", "options": engine}],
        "run_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _sami_kit(args: list[str], *, fake: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if fake:
        env["PYTHONPATH"] = os.pathsep.join([str(FAKE_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = "import sys; from sami_toolkit.cli import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.skipif(REAL_VLLM, reason="vLLM is installed")
def test_run_without_vllm_exits_4_with_the_install_hint(vllm_model_dir: Path, tmp_path: Path) -> None:
    result = _sami_kit(["run", str(_write_run(tmp_path, vllm_model_dir))], fake=False)
    assert result.returncode == 4, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors and "vLLM backend is not available" in errors[0]
    assert "docs/vllm.md" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_run_samples_trains_and_evaluates_with_vllm(vllm_model_dir: Path, tmp_path: Path) -> None:
    result = _sami_kit(["run", str(_write_run(tmp_path, vllm_model_dir))], fake=not REAL_VLLM)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "iterations" / "1" / "metrics.json").read_text())
    assert metrics["mi_scorer"] == "vllm" and metrics["mi_n_queries"] + metrics["mi_skipped_queries"] == 2
    samples = (tmp_path / "run" / "iterations" / "1" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 8  # 4 queries x C = 2 responses, from the vllm sampler
