"""Experiment 3 end to end on the tiny model (issue 16 item 1): the `paper-diverse-cot` and `paper-diverse` presets
scaled down, training on sampled 2-principle constitutions of the train-15, evaluated on in-distribution (train-15)
and held-out (OOD) principles with one sampled constitution per item.

Training and MI scoring run the real tiny model; sampling is scripted (a random tiny model never writes
"Summary:", so the CoT parse would keep nothing) and the judge is the `constant` fake."""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path
from typing import Any, Sequence

import pytest
from run_helpers import WORDS, one_thread, write_posts  # noqa: F401 (autouse fixture)

from sami_toolkit import hookimpl
from sami_toolkit.core.components import ComponentOptions, Sampler
from sami_toolkit.text.constitutions import Constitution
from sami_toolkit.text.principles import load_principle_set

PROMPTS: list[str] = []


class ScriptedSummarySampler(Sampler):
    """A deterministic 'model': words drawn from a hash of the prompt; a CoT prompt gets reasoning, a blank line
    and "Summary: ..." as the paper's CoT format (spec §7.2); any other prompt gets the summary text only."""

    name = "scripted-summary"

    class Options(ComponentOptions):
        pass

    def generate(self, model: str, prompts: Sequence[str], *, progress: Any = None) -> list[str]:
        PROMPTS.extend(prompts)
        out = []
        for p in prompts:
            rng = random.Random(zlib.crc32(f"{model}|{p}".encode()))
            words = " ".join(rng.choice(WORDS) for _ in range(8))
            if p.endswith("The constitution states that"):
                out.append(f" summaries should be short.\n\nSummary: {words.capitalize()}.\n\nHuman: thanks")
            else:
                out.append(f" {words.capitalize()}.")
        if progress is not None:
            progress(len(out))
        return out


class Plugin:
    @hookimpl
    def register_samplers(self, register: Any) -> None:
        register(ScriptedSummarySampler)


def exp3_config(tmp_path: Path, model_dir: Path, preset: str) -> Any:
    from sami_toolkit.run.config import load_run_config

    posts = write_posts(tmp_path / "posts.jsonl", n=12)
    held_out = write_posts(tmp_path / "validation.jsonl", n=4, seed=7)
    return load_run_config(preset=preset, overrides=[
        f"model={model_dir}", "iterations=1", "batch_size=2", "batches_per_iteration=1", "data.pool_size=6",
        f'data.source={{"name": "jsonl", "options": {{"path": "{posts}"}}}}',
        f'data.eval_source={{"name": "jsonl", "options": {{"path": "{held_out}"}}}}',
        "eval.size=4", 'sampler={"name": "scripted-summary"}', 'trainer={"name": "torch"}', "train.precision=fp32",
        "train.lr=1e-3", 'judge={"name": "constant", "options": {"verdict": "A"}}', f"run_dir={tmp_path / 'run'}"])


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _names_in(text: str, pset: Any) -> set[str]:
    return {p.name for p in pset.principles if p.definition in text or p.antithesis in text}


@pytest.mark.parametrize("preset", ["paper-diverse-cot", "paper-diverse"])
def test_exp3_loop_trains_on_train_principles_and_evaluates_id_and_ood(tmp_path, tiny_model_dir, sami_kit_registry,
                                                                       sami_kit_fakes, sami_kit_register_plugin,
                                                                       preset, capsys):
    from sami_toolkit.evaluation.win_rate import format_split_table, run_split_table
    from sami_toolkit.run.loop import run_sami

    sami_kit_register_plugin(Plugin(), "exp3-test")
    PROMPTS.clear()
    config = exp3_config(tmp_path, tiny_model_dir, preset)
    root = run_sami(config, registry=sami_kit_registry)
    pset = load_principle_set("tldr-diverse")
    train, held = set(pset.train_principles), set(pset.held_out_principles)
    cot = preset.endswith("-cot")

    # training data: per query two complementary constitutions of 2 train principles (spec §5.3)
    samples = _rows(root / "iterations" / "1" / "samples.jsonl")
    by_query: dict[str, list[Constitution]] = {}
    for row in samples:
        by_query.setdefault(row["query_id"], []).append(Constitution.from_dict({"items": row["items"]}))
    assert len(by_query) == 6
    for first, second in by_query.values():
        assert second == first.complement() and len(first.items) == 2 and set(first.names) <= train
    # the sampling prompt: CoT (spec §7.2) or the training prompt without prefill (no CoT)
    if cot:
        assert any(p.endswith("The constitution states that") for p in PROMPTS)
    assert all(not p.endswith("Summary: The post") for p in PROMPTS)
    pairs = _rows(root / "iterations" / "1" / "pairs.jsonl")
    assert pairs and all("Summary:" not in r and "Reasoning" not in r and r.endswith(".")
                         for p in pairs for r in p["responses"])
    assert all(p["train_prompts"][0].endswith("Summary:") for p in pairs)  # training prompt, spec §7.1

    # evaluation: one sampled constitution per item, ID from the train-15, OOD from the held-out-5
    for t in (0, 1):
        metrics = json.loads((root / "iterations" / str(t) / "metrics.json").read_text())
        for split in ("id", "ood"):
            assert metrics[f"{split}_mi_n_constitutions"] == 2  # the constitution and its complement, spec §1.6
            assert f"{split}_mi_paper" in metrics and f"{split}_mi_infonce_constitutions" in metrics
        assert metrics["id_win_rate_vs_base"] == 0.5 if t == 0 else metrics["id_win_rate_vs_base_n"] == 4
    eval_dir = root / "iterations" / "1" / "eval"
    for split, pool in (("id", train), ("ood", held)):
        judged = _rows(eval_dir / f"{split}_win_rate_vs_base.jsonl")
        assert len(judged) == 4
        assert all(len(_names_in(r["constitution"], pset)) == 2 and _names_in(r["constitution"], pset) <= pool
                   for r in judged)
        mi_rows = _rows(eval_dir / f"mi-{split}.jsonl")
        for row in mi_rows:
            first, second = (Constitution.from_label(label) for label in row["constitutions"])
            assert set(first.names) <= pool and second == first.complement()
        # win rate and MI contrast the same constitution per item (seeded by seed, split and query id)
        assert {r["id"]: _names_in(r["constitution"], pset) for r in judged} == {
            r["id"]: set(Constitution.from_label(r["constitutions"][0]).names) for r in mi_rows}
    rows = run_split_table(root)
    assert [(r["iteration"], r["principles"]) for r in rows] == [(1, "In-Distribution"), (1, "OOD")]
    # the console table, summary.md and report.html show the ID and OOD columns (prefixed vocabulary keys)
    summary = (root / "summary.md").read_text()
    assert "| ID MI col | OOD MI col | ID win vs base | OOD win vs base |" in summary
    from sami_toolkit.report.run_page import build_report

    page = build_report(root)
    assert "ID: MI, InfoNCE constitution side" in page and "OOD: win rate vs base" in page
    with capsys.disabled():
        print(f"\n[{preset}] spec §9.3 table of the tiny run (n = 4 per split, constant judge 'A'):")
        print(format_split_table(rows))
