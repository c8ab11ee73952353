"""The ``mi-vllm`` evaluator gives the core ``mi`` evaluator's numbers (same responses, same shuffles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sami_toolkit.core.components import Sampler
from sami_toolkit.core.records import Query

QUERIES = [Query("q1", "The cat sat on the mat and my dog sat with my friend."),
           Query("q2", "I have a question about my landlord and my job.")]
ESTIMATE_KEYS = ("mi_paper", "mi_infonce", "mi_infonce_constitutions", "mi_infonce_responses")
RESPONSES = ["is about a cat.", "asks about a landlord and a job.", "is brief.", "my dog sat with my friend."]


class CyclingSampler(Sampler):
    """Deterministic, different responses per constitution: the i-th prompt gets RESPONSES[i % 4]."""

    name = "cycling"

    def generate(self, model: str, prompts: Any, *, progress: Any = None) -> list[str]:
        return [RESPONSES[i % len(RESPONSES)] for i in range(len(prompts))]


def _context(model_dir: Path, sampler: Any, out_dir: Path) -> Any:
    from sami_toolkit.evaluation.context import EvalContext
    from sami_toolkit.testing import FixedPrincipleWriter

    pset = FixedPrincipleWriter().write("tldr", ["concise", "thorough"]).principle_set
    return EvalContext(model=str(model_dir), base_model=None, queries=list(QUERIES), principle_set=pset,
                       templates=None, task="tldr", sampler=sampler, judge=None, out_dir=out_dir, seed=3)


#: |mi-vllm - mi| allowed for every MI estimate and every C×C score (float32 on both sides; measured on the CPU
#: build: below 1e-4); docs/vllm.md states the same tolerance
MI_TOLERANCE = 2e-3


def test_mi_vllm_equals_the_core_mi_evaluator(vllm_module: Any, vllm_model_dir: Path, tmp_path: Path,
                                              engine_options: dict) -> None:
    from sami_toolkit import get_component
    fixed = CyclingSampler()  # deterministic responses: only the scoring differs
    core = get_component("evaluators", "mi", {"dtype": "float32", "autocast": False}).evaluate(
        _context(vllm_model_dir, fixed, tmp_path / "core"))
    ours = get_component("evaluators", "mi-vllm", engine_options).evaluate(
        _context(vllm_model_dir, fixed, tmp_path / "vllm"))
    assert ours["mi_n_queries"] == core["mi_n_queries"] == 2 and ours["mi_n_constitutions"] == 4
    for key in ESTIMATE_KEYS:
        assert ours[key] == pytest.approx(core[key], abs=MI_TOLERANCE), key
        assert ours[f"{key}_sem"] == pytest.approx(core[f"{key}_sem"], abs=MI_TOLERANCE), key
    assert ours["mean_length_tokens"] == core["mean_length_tokens"]
    assert (ours["mi_scorer"], ours["mi_precision"]) == ("vllm", "vllm float32")
    assert (core["mi_scorer"], core["mi_precision"]) == ("transformers", "float32")
    import json

    rows_core = [json.loads(x) for x in Path(core["mi_file"]).read_text().splitlines()]
    rows_ours = [json.loads(x) for x in Path(ours["mi_file"]).read_text().splitlines()]
    assert [r["responses"] for r in rows_ours] == [r["responses"] for r in rows_core]
    for a, b in zip(rows_ours, rows_core):
        for row_a, row_b in zip(a["scores"], b["scores"]):
            assert row_a == pytest.approx(row_b, abs=MI_TOLERANCE)
    assert len({round(x, 2) for r in rows_ours for row in r["scores"] for x in row}) > 4  # a non-trivial matrix


def test_mi_vllm_reuses_the_vllm_samplers_engine(fake_vllm: Any, vllm_model_dir: Path, tmp_path: Path) -> None:
    from sami_toolkit import get_component

    sampler = get_component("samplers", "vllm", {"dtype": "float32", "max_new_tokens": 4})
    result = get_component("evaluators", "mi-vllm", {"dtype": "float32"}).evaluate(
        _context(vllm_model_dir, sampler, tmp_path))
    assert [c[0] for c in fake_vllm.CALLS if c[0] == "LLM"] == ["LLM"]  # loaded once, for both stages
    assert result["mi_n_queries"] + result["mi_skipped_queries"] == 2
    assert fake_vllm.INSTANCES[0].is_shut_down and sampler.engine.llm is None  # GPU handed back for training
    if result["mi_n_queries"]:
        scoring = [c for c in fake_vllm.CALLS if c[0] == "generate" and c[3].prompt_logprobs == 0]
        assert sum(len(c[2]) for c in scoring) == result["mi_n_queries"] * 16  # C × C requests per query


def test_mi_vllm_needs_a_principle_set(vllm_module: Any, vllm_model_dir: Path, tmp_path: Path) -> None:
    from sami_toolkit.core.errors import ConfigError
    from sami_toolkit import get_component
    from sami_toolkit.testing import EchoSampler

    ctx = _context(vllm_model_dir, EchoSampler(), tmp_path)
    ctx.principle_set = None
    with pytest.raises(ConfigError, match="principle set"):
        get_component("evaluators", "mi-vllm").evaluate(ctx)
