"""DeepSpeed plugin tests: tiny random models only, no network; DeepSpeed's compiled op is cached across runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# DeepSpeed compiles a small C++ op on first use (~25 s or more); keep it in the user's cache, not a tmp dir
os.environ.setdefault("TORCH_EXTENSIONS_DIR",
                      str(Path(os.environ.get("SAMI_KIT_CACHE", Path.home() / ".cache" / "sami-kit"))
                          / "torch_extensions"))

WORDS = ["cat", "mat", "landlord", "job", "friend", "dog", "question", "post"]


def write_pairs(path: Path, n: int) -> Path:
    """A pairs.jsonl in the loop's format whose text the tiny tokenizer knows."""
    kinds = ["brief and to the point", "thorough and include all important information"]
    lines = []
    for i in range(n):
        w = WORDS[i % len(WORDS)]
        lines.append(json.dumps({
            "query_id": f"q{i}", "query": f"POST: I have a question about my {w}.",
            "constitutions": [f"1. Summaries should be {k}." for k in kinds], "labels": ["pos", "neg"],
            "train_prompts": [f"1. Summaries should be {k}.\nPOST: I have a question about my {w}. Summary:"
                              for k in kinds],
            "responses": [f"The post is about my {w}.", f"The post is about my {w} and my {WORDS[(i + 3) % 8]}."],
            "iteration": 1}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "pairs.jsonl", 8)
