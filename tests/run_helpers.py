"""Shared helpers for the run/loop/resume tests: a tiny posts file and a fast run config on the tiny model."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

WORDS = ("the cat my landlord job friend dog rent car house money school work sister boss city train "
         "summer plan moved asked said because never always").split()


def write_posts(path: Path, n: int = 14, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps({"id": f"p{i}", "text": " ".join(rng.choice(WORDS) for _ in range(18))}) + "\n")
    return path


def tiny_config(tmp_path: Path, model_dir: Path, **changes: Any) -> Path:
    """A 2-iteration run on the tiny model that finishes in seconds: 5 queries per half, 4 held out,
    8 new tokens, relaxed filter, batch 2, N_b 1 (1 and 2 steps)."""
    posts = write_posts(tmp_path / "posts.jsonl")
    data: dict[str, Any] = {
        "name": "tiny", "model": str(model_dir), "task": "tldr", "principles": "tldr-mistral",
        "data": {"source": {"name": "jsonl", "options": {"path": str(posts)}}, "pool_size": 5},
        "eval": {"size": 4},
        "sampler": {"name": "hf", "options": {"max_new_tokens": 8, "batch_size": 4, "dtype": "float32"}},
        "filter": {"drop_substrings": [], "require_positive_period": False, "require_distinct": False},
        "iterations": 2, "batches_per_iteration": 1, "batch_size": 2,
        "train": {"lr": 1.0e-3, "precision": "fp32"},
        "evaluators": [{"name": "mi"}],
        "run_dir": str(tmp_path / "run"),
    }
    for key, value in changes.items():
        data[key] = value
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: OpenMP worker threads only add contention (2-4x slower under load).
    Imported by the test modules that run models, where it applies to every test."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
