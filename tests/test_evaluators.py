"""The ``mi`` and ``win-rate`` evaluators on a tiny random model (MI scoring is real; sampling and judging are
scripted so the expected outcomes are known)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import pytest
from pydantic import Field

from sami_toolkit import hookimpl
from sami_toolkit.core.components import ComponentOptions, Judge, Sampler
from sami_toolkit.core.records import JudgeItem, Judgment, Query
from sami_toolkit.evaluation.context import EvalContext
from sami_toolkit.text.principles import load_principle_set

CALLS: list[tuple[str, int]] = []


class ConstitutionSampler(Sampler):
    """Answers with the first principle line of the prompt's constitution (so responses depend on it);
    responses of the model named 'candidate' carry a GOOD marker."""

    name = "constitution-echo"

    class Options(ComponentOptions):
        words: int = Field(6, description="Words of the principle echoed.")

    def generate(self, model: str, prompts: Sequence[str], *, progress: Any = None) -> list[str]:
        CALLS.append((model, len(prompts)))
        out = []
        for p in prompts:
            m = re.search(r"^1\. (.*)$", p, flags=re.MULTILINE)
            text = " ".join((m.group(1) if m else "nothing").split()[: self.options.words])
            out.append(("GOOD " if "candidate" in model else "") + f"I will {text.lower()}")
        return out


class MarkerJudge(Judge):
    """Prefers the response with the GOOD marker."""

    name = "marker"

    class Options(ComponentOptions):
        model: str = Field("marker-judge", description="Model name.")

    def judge(self, items: Sequence[JudgeItem], *, progress: Any = None) -> list[Judgment]:
        out = []
        for item in items:
            a, b = "GOOD" in item.response_a, "GOOD" in item.response_b
            v = "A" if a and not b else "B" if b and not a else "tie"
            out.append(Judgment(id=item.id, verdict=v, raw=f"Final Response: {v}", cost=0.001))
        return out


class Plugin:
    @hookimpl
    def register_samplers(self, register: Any) -> None:
        register(ConstitutionSampler)

    @hookimpl
    def register_judges(self, register: Any) -> None:
        register(MarkerJudge)


@pytest.fixture
def registry(sami_kit_register_plugin, sami_kit_registry):
    """This test's registry, with the test plugin's sampler and judge."""
    sami_kit_register_plugin(Plugin(), "evaluator-test-plugin")
    CALLS.clear()
    return sami_kit_registry


QUERIES = [Query(id=f"q{i}", text=f"How do I fix my bike, question number {i}?") for i in range(5)]


def _context(registry: Any, tmp_path: Path, model: str, **kw: Any) -> EvalContext:
    defaults = dict(model=model, base_model=None, queries=QUERIES, principle_set=load_principle_set("hh-rlhf"),
                    templates=None, task="hh-rlhf", sampler=registry.create("samplers", "constitution-echo"),
                    judge=None, out_dir=tmp_path / "eval", seed=3)
    defaults.update(kw)
    return EvalContext(**defaults)


def test_evaluators_are_registered(sami_kit_registry):
    assert {"mi", "win-rate"} <= set(sami_kit_registry.names("evaluators"))
    assert sami_kit_registry.get("evaluators", "win_rate").name == "win-rate"


@pytest.mark.slow
def test_mi_evaluator_on_tiny_model(registry, tiny_model_dir, tmp_path):
    import torch

    from sami_toolkit.training.losses import infonce_mi, paper_mi

    evaluator = registry.create("evaluators", "mi", {"batch_size": 2})
    metrics = evaluator.evaluate(_context(registry, tmp_path, str(tiny_model_dir)))
    assert metrics["mi_n_queries"] == 5 and metrics["mi_n_constitutions"] == 4
    assert CALLS == [(str(tiny_model_dir), 20)]  # one response per (query, constitution), one call
    rows = [json.loads(line) for line in (tmp_path / "eval" / "mi.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [q.id for q in QUERIES]
    for r in rows:
        s = torch.tensor(r["scores"])
        assert s.shape == (4, 4) and bool((s < 0).all())  # SUM log-probs of multi-token responses
        assert r["mi_paper"] == pytest.approx(float(paper_mi(s, reduction="none")), abs=1e-4)
        assert r["mi_infonce_constitutions"] == pytest.approx(
            float(infonce_mi(s, variant="constitutions", reduction="none")), abs=1e-4)
        assert r["mi_infonce_constitutions"] <= math.log(4) + 1e-6  # a real bound
        assert len(r["responses"]) == 4 and len(set(r["responses"])) > 1
    mean = sum(r["mi_infonce_constitutions"] for r in rows) / 5
    assert metrics["mi_infonce_constitutions"] == pytest.approx(mean, abs=1e-6)
    assert metrics["mi_infonce_constitutions_sem"] > 0
    for key in ("mi_paper", "mi_infonce", "mi_infonce_responses", "mean_length_tokens"):
        assert metrics[key] is not None and metrics[f"{key}_sem"] is not None
    assert metrics["mean_length_tokens"] == pytest.approx(sum(r["length_tokens"] for r in rows) / 5)
    from sami_toolkit.core.metrics import metric_keys

    assert set(metrics) <= metric_keys(), set(metrics) - metric_keys()


@pytest.mark.slow
def test_mi_sum_scores_change_with_the_scored_constitution(registry, tiny_model_dir, tmp_path):
    # the matrix is not constant down a column: the constitution in the training prompt changes the log-prob
    metrics32 = registry.create("evaluators", "mi", {"batch_size": 5, "autocast": False}).evaluate(
        _context(registry, tmp_path, str(tiny_model_dir)))
    row = json.loads((tmp_path / "eval" / "mi.jsonl").read_text().splitlines()[0])
    column = [row["scores"][k][0] for k in range(4)]
    assert max(column) - min(column) > 1e-4
    # bf16 autocast gives the same matrix up to bf16 rounding (same seed -> same shuffles and responses)
    metrics16 = registry.create("evaluators", "mi", {"batch_size": 5, "autocast": True,
                                                   "file_name": "mi-bf16.jsonl"}).evaluate(
        _context(registry, tmp_path, str(tiny_model_dir)))
    assert metrics16["mi_precision"] == "bf16-autocast" and metrics32["mi_precision"] == "float32"
    row16 = json.loads((tmp_path / "eval" / "mi-bf16.jsonl").read_text().splitlines()[0])
    assert row16["responses"] == row["responses"]
    for a, b in zip(sum(row["scores"], []), sum(row16["scores"], [])):
        assert b == pytest.approx(a, rel=0.05, abs=0.5)


def test_heldout_mi_scores_fixed_base_responses_under_the_two_extreme_constitutions(registry, tiny_model_dir,
                                                                                     tmp_path):
    """``mi-heldout``: the base model's responses (sampled once, cached), the all-positive and all-negative
    constitutions, the evaluated checkpoint as scorer, keys prefixed ``heldout_``."""
    from sami_toolkit.core.metrics import metric_keys

    evaluator = registry.create("evaluators", "mi-heldout", {"batch_size": 5})
    ctx = _context(registry, tmp_path, str(tiny_model_dir), base_model="base-model",
                   options={"cache_dir": str(tmp_path / "cache")})
    metrics = evaluator.evaluate(ctx)
    assert CALLS == [("base-model", 10)]  # 5 queries x 2 constitutions, from the BASE model
    assert metrics["heldout_mi_n_constitutions"] == 2 and metrics["heldout_mi_n_queries"] == 5
    assert not any(key.startswith("mi_") for key in metrics) and set(metrics) <= metric_keys()
    rows = [json.loads(line) for line in (tmp_path / "eval" / "mi-heldout.jsonl").read_text().splitlines()]
    positive, negative = rows[0]["constitutions"]
    assert "not " not in positive and all(part.startswith("not ") for part in negative.split(", "))
    assert len(rows[0]["scores"]) == 2 and len(rows[0]["scores"][0]) == 2
    assert metrics["heldout_mi_infonce_constitutions"] <= math.log(2) + 1e-6
    # the next checkpoint: the same responses come from the cache, only the scorer changes
    again = evaluator.evaluate(_context(registry, tmp_path, str(tiny_model_dir), base_model="base-model",
                                        options={"cache_dir": str(tmp_path / "cache")}))
    assert CALLS == [("base-model", 10)]
    assert again["heldout_mi_infonce_constitutions"] == pytest.approx(metrics["heldout_mi_infonce_constitutions"])
    with pytest.raises(Exception, match="no base model"):
        evaluator.evaluate(_context(registry, tmp_path, str(tiny_model_dir)))


def test_mi_needs_a_principle_set(registry, tmp_path):
    from sami_toolkit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="principle set"):
        registry.create("evaluators", "mi").evaluate(_context(registry, tmp_path, "m", principle_set=None))


def test_win_rate_evaluator_and_base_cache(registry, tiny_model_dir, tmp_path):
    judge = registry.create("judges", "marker")
    options = {"length_tokenizer": str(tiny_model_dir), "bootstrap": 100}
    ctx = _context(registry, tmp_path, "candidate-ckpt", base_model="base-model", baseline_model="instruct-model",
                   judge=judge, options={"cache_dir": str(tmp_path / "cache")})
    metrics = registry.create("evaluators", "win-rate", options).evaluate(ctx)
    assert metrics["win_rate_vs_base"] == 1.0 and metrics["win_rate_vs_instruct"] == 1.0
    assert metrics["win_rate_vs_base_n"] == 5 and metrics["win_rate_vs_base_failures"] == 0
    assert metrics["judge_cost"] == pytest.approx(0.01)
    assert metrics["judge_health_vs_base"]["failure_rate"] == 0.0
    rows = [json.loads(x) for x in (tmp_path / "eval" / "win_rate_vs_base.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(r["outcome"] == 1 and r["raw"] for r in rows)
    assert all(r["len_test"] > r["len_baseline"] for r in rows)  # "GOOD " adds tokens
    # the judge saw the all-positive constitution (spec §8.2): both definitions, in a shuffled order
    pset = load_principle_set("hh-rlhf")
    for r in rows:
        assert all(p.definition in r["constitution"] for p in pset.principles)
    models = [m for m, _ in CALLS]
    assert models == ["candidate-ckpt", "base-model", "instruct-model"]
    # the instruct comparator is prompted through its chat template (spec §7.4); this fake one has none
    assert "raw instruct prompts used" in metrics["win_rate_vs_instruct_prompt_note"]
    from sami_toolkit.core.metrics import metric_keys

    known = metric_keys()
    assert set(metrics) <= known, set(metrics) - known  # the documented key list is complete
    # next iteration: the base and instruct responses come from the cache
    CALLS.clear()
    ctx2 = _context(registry, tmp_path, "candidate-ckpt-2", base_model="base-model", judge=judge,
                    options={"cache_dir": str(tmp_path / "cache")})
    registry.create("evaluators", "win-rate", options).evaluate(ctx2)
    assert [m for m, _ in CALLS] == ["candidate-ckpt-2"]


def test_win_rate_against_itself_is_the_chance_reference(registry, tmp_path):
    ctx = _context(registry, tmp_path, "base-model", base_model="base-model",
                   judge=registry.create("judges", "marker"))
    metrics = registry.create("evaluators", "win-rate").evaluate(ctx)
    assert metrics["win_rate_vs_base"] == 0.5 and CALLS == []


@pytest.mark.slow
def test_instruct_prompts_use_the_models_chat_template(smollm2_dir):
    from sami_toolkit.sampling.generation import chat_prompts

    prompts, note = chat_prompts(str(smollm2_dir), ["Summarize this post."])
    assert note is None
    assert "Summarize this post." in prompts[0] and prompts[0] != "Summarize this post."
    assert prompts[0].rstrip().endswith("assistant")  # generation prompt added


def test_eval_mi_cli(sami_kit_fakes, sami_kit_registry, tiny_model_dir, tmp_path, capsys):
    from sami_toolkit.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Can you help me plan trip {i}?"}) + "\n"
                               for i in range(3)))
    with pytest.raises(SystemExit) as exc:
        main(["eval", "mi", str(tiny_model_dir), "--principles", "hh-rlhf", "--prompts", str(prompts), "--task",
              "hh-rlhf", "--sampler", "echo", "--sampler-option", "max_chars=30", "-o", "batch_size=3",
              "--out-dir", str(tmp_path / "mi"), "--json"], registry=sami_kit_registry)
    out = capsys.readouterr()
    assert exc.value.code == 0, out.err
    metrics = json.loads(out.out)
    assert metrics["mi_n_queries"] == 3 and metrics["mi_n_constitutions"] == 4
    assert metrics["mi_infonce_constitutions"] <= math.log(4)
    assert len((tmp_path / "mi" / "mi.jsonl").read_text().splitlines()) == 3
    with pytest.raises(SystemExit) as exc:
        main(["eval", "mi", str(tiny_model_dir), "--principles", "hh-rlhf"])
    assert exc.value.code == 2 and "--prompts" in capsys.readouterr().err


def test_progress_label_names_the_iteration_of_a_run_checkpoint(tmp_path):
    from sami_toolkit.evaluation.context import EvalContext, progress_label

    def label(model: str) -> str:
        context = EvalContext(model=model, base_model=None, queries=[], principle_set=None, templates=None,
                              task="generic", sampler=None, judge=None, out_dir=tmp_path, seed=0)  # type: ignore[arg-type]
        return progress_label(context, "MI: scoring")

    assert label(str(tmp_path / "run" / "iterations" / "2" / "checkpoint")) == "MI: scoring [iteration 2]"
    assert label("HuggingFaceTB/SmolLM2-135M") == "MI: scoring [SmolLM2-135M]"
