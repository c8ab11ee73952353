"""The spec §10 options that reproduce the paper's code exactly (issue 16 item 4) and the HH / Exp. 3 building blocks
(items 1–3): each option's effect, with the default unchanged.  No model is loaded except where a test says so."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence

import pytest

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.core.records import Judgment, Query
from sami_toolkit.text.principles import load_principle_set


# ------------------------------------------------------------------------------------------- §10.15 verdict parse
@pytest.mark.parametrize("text, strict, paper", [
    ("Comparison: x\nFinal Response: A", "A", "A"),
    ("Comparison: x\nFinal Response: B", "B", "B"),
    ("Comparison: x\nFinal Response: A and B", None, "tie"),       # the paper's numbers count this as a tie
    ("Comparison: x\nFinal Response: Summary B is better", None, "B"),
    ("Comparison: x\nFinal Response: Neither", None, None),         # neither letter: failed, never 0.5 here
    ("no marker at all: A", None, None),
    ("Final Response: a", None, None),                              # case-sensitive, as the paper's code
])
def test_paper_parse_is_the_substring_test_and_strict_stays_default(text, strict, paper):
    from sami_toolkit.judging import parse_final_answer, parse_paper_verdict

    assert parse_final_answer(text) == strict
    assert parse_paper_verdict(text) == paper


class _RawJudge:
    """A judge that answers with fixed raw texts and the strict parse of them (as the litellm judge does)."""

    name = "raw"
    model_name = "raw-judge"

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers = list(answers)

    def judge(self, items, *, progress=None):
        from sami_toolkit.judging import parse_final_answer

        out = []
        for item, raw in zip(items, self.answers):
            v = parse_final_answer(raw)
            out.append(Judgment(id=item.id, verdict=v or "failed", raw=raw,
                                error=None if v else "could not parse a final answer"))
        return out


def test_judge_pairs_parse_paper_turns_a_and_b_into_a_tie():
    from sami_toolkit.judging.pairwise import ComparisonPair, judge_pairs

    pairs = [ComparisonPair(id=f"i{i}", query="q", constitution="1. c", candidate="x", baseline="y")
             for i in range(3)]
    answers = ["Final Response: A and B", "Final Response: Neither", "Final Response: A"]
    strict = judge_pairs(_RawJudge(answers), pairs, seed=1)
    paper = judge_pairs(_RawJudge(answers), pairs, seed=1, parse="paper")
    assert [o.outcome for o in strict][:2] == [None, None]
    assert paper[0].outcome == 0.5 and paper[0].error is None
    assert paper[1].outcome is None and paper[1].error  # neither letter: still a failure, never a verdict
    assert strict[2].outcome == paper[2].outcome is not None
    with pytest.raises(ConfigError, match="parse mode"):
        judge_pairs(_RawJudge(answers), pairs, parse="lenient")


# ------------------------------------------------------------------------------------------- §10.5 LR schedule
def test_linear_warmup_with_the_authors_total_of_15_steps():
    from sami_toolkit.training.optim import lr_multiplier
    from sami_toolkit.training.settings import TrainSettings

    authors = lr_multiplier(TrainSettings(schedule="linear_warmup", schedule_total_steps=15), 6)
    assert [round(authors(k), 2) for k in range(6)] == [0.0, 1.0, 0.93, 0.86, 0.79, 0.71]
    per_iteration = lr_multiplier(TrainSettings(schedule="linear_warmup"), 6)  # T = the iteration's steps
    assert [round(per_iteration(k), 2) for k in range(6)] == [0.0, 1.0, 0.8, 0.6, 0.4, 0.2]
    assert lr_multiplier(TrainSettings(), 6)(0) == 1.0  # constant stays the default


@pytest.mark.parametrize("preset", ["paper-tldr", "paper-tldr-mixtral", "paper-hh", "paper-diverse",
                                    "paper-diverse-cot"])
def test_paper_presets_use_the_authors_trainer(preset):
    from sami_toolkit.run.config import load_run_config
    from sami_toolkit.training.optim import lr_multiplier

    cfg = load_run_config(preset=preset)
    t = cfg.train
    assert (t.schedule, t.warmup_steps, t.schedule_total_steps, t.max_grad_norm) == ("linear_warmup", 1, 15, 1.0)
    steps = cfg.steps_for(cfg.iterations)
    effective = sum(1 for k in range(steps) if lr_multiplier(t, steps)(k) > 0)
    assert effective == steps - 1  # spec §10.5: 5 of 6 (Exp. 1–2), 11 of 12 (llama) steps move the weights


# ------------------------------------------------------------------------------------------- §10.17 KL variants
def test_kl_variants_on_known_logits():
    import torch

    from sami_toolkit.training.losses import kl_all_positions, kl_response_tokens, kl_sequence

    torch.manual_seed(0)
    p, q = torch.randn(1, 2, 2, 3, 5), torch.randn(1, 2, 2, 3, 5)
    mask = torch.tensor([True, True, False]).expand(1, 2, 2, 3).clone()
    per_token = (p.log_softmax(-1).exp() * (p.log_softmax(-1) - q.log_softmax(-1))).sum(-1)
    assert float(kl_response_tokens(p, q, mask)) == pytest.approx(float(per_token[..., :2].mean()), rel=1e-6)
    assert float(kl_sequence(p, q, mask)) == pytest.approx(float(per_token[..., :2].sum(-1).mean()), rel=1e-6)
    assert float(kl_all_positions(p, q)) == pytest.approx(float(per_token.mean()), rel=1e-6)
    assert float(kl_sequence(p, p, mask)) == pytest.approx(0.0, abs=1e-6)


@pytest.fixture
def tiny_pair_batch() -> list[dict]:
    return [{"train_prompts": ["Constitution: be brief.\nPOST: my cat\nSummary:",
                               "Constitution: be long.\nPOST: my cat\nSummary:"],
             "responses": [" The cat sat.", " A very long story about the cat and the dog"]}]


@pytest.mark.parametrize("mode", ["response_tokens", "sequence", "all_positions"])
def test_sami_step_kl_modes_against_a_reference(tiny_model_dir, tiny_pair_batch, mode):
    """Each mode gives 0 against an identical reference and the documented value against a different one (the
    all-positions value recomputed here from a plain forward over the padded rows, prompt and padding included)."""
    import copy

    import torch

    from sami_toolkit.models.loading import load_model, load_tokenizer
    from sami_toolkit.training.losses import sami_loss
    from sami_toolkit.training.settings import TrainSettings
    from sami_toolkit.training.step import sami_step

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    settings = TrainSettings(kl_beta=0.5, kl_mode=mode, precision="fp32")
    same = copy.deepcopy(model)
    got = sami_step(model, tok, tiny_pair_batch, settings, loss_fn=sami_loss, reference_model=same)
    assert got["kl"] == pytest.approx(0.0, abs=1e-6)
    model.zero_grad()
    other = copy.deepcopy(model)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(0.05 * torch.randn_like(param))
    kls = {}
    for m in ("response_tokens", "sequence", "all_positions"):
        kls[m] = sami_step(model, tok, tiny_pair_batch, TrainSettings(kl_beta=0.5, kl_mode=m, precision="fp32"),
                           loss_fn=sami_loss, reference_model=other)["kl"]
        model.zero_grad()
    assert all(v > 0 for v in kls.values())
    assert kls["sequence"] > kls["response_tokens"]  # a sum over several response tokens vs their mean
    if mode == "all_positions":
        from sami_toolkit.training.scoring.batches import naive_batch
        from sami_toolkit.training.scoring.encoding import encode

        batch = naive_batch(encode(tok, [q["train_prompts"] for q in tiny_pair_batch],
                                   [q["responses"] for q in tiny_pair_batch], settings.scoring))
        with torch.no_grad():
            lp = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.log_softmax(-1)
            lq = other(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.log_softmax(-1)
        assert kls["all_positions"] == pytest.approx(float((lp.exp() * (lp - lq)).sum(-1).mean()), rel=1e-4)


# ------------------------------------------------------------------------------------- §10.13 MI shuffles, §1.6
class _ScriptedSampler:
    """Responses that depend on the prompt's first principle line (so constitutions matter)."""

    name = "scripted"
    options = None

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def generate(self, model, prompts, *, progress=None):
        import re

        self.calls.append((model, list(prompts)))
        out = []
        for p in prompts:
            found = re.findall(r"^\d\. (.*)$", p, flags=re.MULTILINE)
            out.append("Reasoning: fine.\n\nSummary: " + (found[0][:30] if found else "none") + ".")
        if progress is not None:
            progress(len(out))
        return out

    def close(self) -> None:
        pass


def _fake_session(record: list):
    """A scoring session that records every prompt batch and scores each (prompt, response) by a hash."""
    import contextlib
    import zlib

    import torch

    from sami_toolkit.evaluation.mi import ScoringSession

    class Tok:
        def encode(self, text):
            return text.split()

    @contextlib.contextmanager
    def session(self, context):
        def score(prompts, responses, advance):
            record.append(prompts)
            out = torch.tensor([[[-(zlib.crc32((p + r).encode()) % 1000) / 10.0 for r in rs] for p in ps]
                                for ps, rs in zip(prompts, responses)])
            advance(len(prompts))
            return out

        yield ScoringSession(score, Tok(), "fake")

    return session


def _context(tmp_path: Path, pset_name: str, queries: list[Query], **kw: Any):
    from sami_toolkit.evaluation.context import EvalContext

    defaults = dict(model="ckpt", base_model="base", queries=queries, principle_set=load_principle_set(pset_name),
                    templates=None, task="tldr", sampler=_ScriptedSampler(), judge=None, out_dir=tmp_path / "eval",
                    seed=42, options={"cache_dir": str(tmp_path / "cache")})
    defaults.update(kw)
    return EvalContext(**defaults)


POSTS = [Query(id=f"p{i}", text=f"My landlord raised the rent again, post {i}.") for i in range(6)]


def test_mi_shuffle_per_entry_scores_every_entry_with_its_own_order(tmp_path, monkeypatch, sami_kit_registry):
    from sami_toolkit.evaluation.mi import MIEvaluator

    record: list = []
    monkeypatch.setattr(MIEvaluator, "scoring_session", _fake_session(record))
    ctx = _context(tmp_path, "tldr-mistral", POSTS[:3])
    shared = sami_kit_registry.create("evaluators", "mi").evaluate(ctx)
    assert len(record) == 1 and shared["mi_n_constitutions"] == 4
    record.clear()
    per_entry = sami_kit_registry.create("evaluators", "mi", {"shuffle_per_entry": True}).evaluate(ctx)
    assert len(record) == 4  # one scoring pass per response column j, each with fresh shuffles
    orders = {tuple(record[j][0][0] for j in range(4))}  # query 0, constitution 0, pass j
    assert len(next(iter(orders))) == 4 and len(set(next(iter(orders)))) > 1  # the passes' orders differ
    rows = [json.loads(x) for x in (tmp_path / "eval" / "mi.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and per_entry["mi_n_queries"] == 3
    assert per_entry["mi_paper"] != shared["mi_paper"]


def test_mi_sampled_uses_a_constitution_and_its_complement_from_the_split(tmp_path, monkeypatch, sami_kit_registry):
    from sami_toolkit.evaluation.mi import MIEvaluator

    monkeypatch.setattr(MIEvaluator, "scoring_session", _fake_session([]))
    pset = load_principle_set("tldr-diverse")
    for split, pool in (("id", pset.train_principles), ("ood", pset.held_out_principles)):
        ctx = _context(tmp_path, "tldr-diverse", POSTS, sampler=_ScriptedSampler())
        metrics = sami_kit_registry.create("evaluators", "mi-sampled",
                                           {"principles": split, "prompt": "generation_cot"}).evaluate(ctx)
        assert metrics[f"{split}_mi_n_constitutions"] == 2 and metrics[f"{split}_mi_n_queries"] == len(POSTS)
        rows = [json.loads(x) for x in (tmp_path / "eval" / f"mi-{split}.jsonl").read_text().splitlines()]
        for row in rows:
            from sami_toolkit.text.constitutions import Constitution

            first, second = (Constitution.from_label(label) for label in row["constitutions"])
            assert second == first.complement() and len(first.items) == 2
            assert set(first.names) <= set(pool)
            assert all(r.endswith(".") and "Reasoning" not in r for r in row["responses"])  # CoT answer only
        # the CoT prompt generated the responses (spec §7.2)
        assert all("Reasoning: First, I will state" in p for p in ctx.sampler.calls[0][1])


def test_mi_instruct_uses_the_instruct_prompt_and_is_computed_once(tmp_path, monkeypatch, sami_kit_registry):
    from sami_toolkit.evaluation.mi import MIEvaluator

    record: list = []
    monkeypatch.setattr(MIEvaluator, "scoring_session", _fake_session(record))
    sampler = _ScriptedSampler()
    ctx = _context(tmp_path, "tldr-mistral", POSTS[:2], baseline_model="instruct-model", sampler=sampler)
    first = sami_kit_registry.create("evaluators", "mi-instruct").evaluate(ctx)
    assert first["instruct_mi_n_queries"] == 2 and "instruct_mi_paper" in first
    model, prompts = sampler.calls[0]
    assert model == "instruct-model"
    # a fake model reference has no chat template: the raw instruct messages of spec §7.4
    assert all(p.startswith("Summarize the post below") and "System:" not in p for p in prompts)
    assert all(p.startswith("Summarize the post below") for batch in record for ps in batch for p in ps)
    sampler.calls.clear()
    again = sami_kit_registry.create("evaluators", "mi-instruct").evaluate(
        _context(tmp_path, "tldr-mistral", POSTS[:2], model="ckpt-2", baseline_model="instruct-model",
                 sampler=sampler))
    assert again == first and sampler.calls == []  # the same baseline at every iteration: cached
    with pytest.raises(ConfigError, match="baseline_model"):
        sami_kit_registry.create("evaluators", "mi-instruct").evaluate(_context(tmp_path, "tldr-mistral", POSTS[:2]))


# ------------------------------------------------------------------------------------- win rate: Exp. 3, seed
class _JudgeA:
    name = "always-a"
    model_name = "always-a"

    def __init__(self) -> None:
        self.items: list = []

    def judge(self, items, *, progress=None):
        self.items.extend(items)
        return [Judgment(id=i.id, verdict="A", raw="Comparison: .\nFinal Response: A") for i in items]


def _principles_of(text: str, pset) -> set[str]:
    names = set()
    for p in pset.principles:
        if p.definition in text or p.antithesis in text:
            names.add(p.name)
    return names


@pytest.mark.parametrize("split", ["id", "ood"])
def test_win_rate_sampled_constitutions_come_from_the_split(tmp_path, sami_kit_registry, tiny_model_dir, split):
    from sami_toolkit.judging.pairwise import assign_positions

    pset = load_principle_set("tldr-diverse")
    judge = _JudgeA()
    ctx = _context(tmp_path, "tldr-diverse", POSTS, judge=judge)
    options = {"constitution": "sampled", "principles": split, "prompt": "training", "bootstrap": 0,
               "length_tokenizer": str(tiny_model_dir)}
    metrics = sami_kit_registry.create("evaluators", "win-rate", options).evaluate(ctx)
    assert metrics[f"{split}_win_rate_vs_base_n"] == len(POSTS) and "win_rate_vs_base" not in metrics
    rows = [json.loads(x) for x in (tmp_path / "eval" / f"{split}_win_rate_vs_base.jsonl").read_text().splitlines()]
    pool = set(pset.train_principles if split == "id" else pset.held_out_principles)
    for row in rows:
        names = _principles_of(row["constitution"], pset)
        assert len(names) == 2 and names <= pool
    # some items carry an antithesis (spec §5.3: "Summaries should use only text." is possible)
    antitheses = {p.antithesis for p in pset.principles}
    assert any(any(a in row["constitution"] for a in antitheses) for row in rows)
    # the paper's position seed 1 (spec §8.3), as `eval compare`
    assert [r["candidate_position"] for r in rows] == assign_positions(len(POSTS), 1)
    # the training prompt generated (no "The post" prefill), and nothing was put in front of the responses
    assert all(p.endswith("Summary:") for _, ps in ctx.sampler.calls for p in ps)


def test_win_rate_rejects_ood_without_held_out_principles(tmp_path, sami_kit_registry):
    ctx = _context(tmp_path, "tldr-mistral", POSTS, judge=_JudgeA())
    with pytest.raises(ConfigError, match="held_out_principles"):
        sami_kit_registry.create("evaluators", "win-rate", {"constitution": "sampled", "principles": "ood"}
                                 ).evaluate(ctx)


def test_split_table_reproduces_the_statistics_of_table_9():
    """Spec §9.3 Table 9 (CoT): the WR, CI, t and p columns follow from the win rate over 250 items (§8.5)."""
    from sami_toolkit.evaluation.win_rate import format_split_table, split_table

    paper = {1: (67.60, 61.80, 73.40, 5.95, 56.20, 50.05, 62.35, 1.98, "<0.05"),
             2: (63.60, 57.64, 69.56, 4.47, 71.60, 66.01, 77.19, 7.57, "<0.001"),
             3: (68.80, 63.06, 74.54, 6.42, 67.00, 61.17, 72.83, 5.72, "<0.001")}
    metrics = {0: {"id_win_rate_vs_base": 0.5, "id_win_rate_vs_base_n": 250}}
    for t, row in paper.items():
        metrics[t] = {"id_win_rate_vs_base": row[0] / 100, "id_win_rate_vs_base_n": 250,
                      "ood_win_rate_vs_base": row[4] / 100, "ood_win_rate_vs_base_n": 250}
    rows = split_table(metrics)
    assert [(r["iteration"], r["principles"]) for r in rows] == [
        (1, "In-Distribution"), (2, "In-Distribution"), (3, "In-Distribution"), (1, "OOD"), (2, "OOD"), (3, "OOD")]
    for r in rows:
        want = paper[r["iteration"]][:4] if r["principles"] == "In-Distribution" else paper[r["iteration"]][4:8]
        assert (round(r["win_rate_pct"], 2), round(r["ci_low_pct"], 2), round(r["ci_high_pct"], 2),
                round(r["t"], 2)) == pytest.approx(want, abs=0.011)
    assert rows[3]["p"] == "<0.05" and rows[0]["p"] == "<0.001"
    table = format_split_table(rows)
    assert table.splitlines()[0] == "| Iter | Principles | WR % | 95% CI | t | p |"
    assert "| 1 | OOD | 56.20 | [50.05, 62.35] | 1.98 | <0.05 |" in table


def test_llama_mi_files_give_the_figure_9_values():
    """The shipped per-item Exp. 3 MI values (C_eval = 2) average to spec §9.3's Figure 9 table."""
    from sami_toolkit.evaluation.stats import mean_sem

    root = Path("/work/shared/paper-results/mi")
    if not root.is_dir():
        pytest.skip("the shared paper data is not on this machine")
    want = {"llama_cot_id_t0": (2.08, 0.18), "llama_cot_id_t3": (207.81, 4.91), "llama_cot_ood_t0": (5.05, 0.37),
            "llama_cot_ood_t3": (158.97, 3.88)}
    for name, (mean, sem) in want.items():
        values = json.loads((root / f"{name}.json").read_text())
        got_mean, got_sem = mean_sem(values)
        assert len(values) == 250 and (round(got_mean, 2), round(got_sem, 2)) == (mean, sem), name


# ------------------------------------------------------------------------------------- HH: subsets, filters
def test_always_negated_principle_and_generation_order():
    from sami_toolkit.text.constitutions import sample_constitutions

    pset = load_principle_set("hh-rlhf")
    seen = set()
    for seed in range(40):
        pos, neg = sample_constitutions(pset, "positive_vs_negative", 2, random.Random(seed), ["harmless", "helpful"],
                                        always_negate=["helpful"])
        assert pos.items == (("harmless", True), ("helpful", True))  # the code's harmless-first order (§10.19)
        assert neg.names == ("harmless", "helpful") and dict(neg.items)["helpful"] is False
        seen.add(neg)
    assert len(seen) == 2  # harmless + not helpful, not harmless + not helpful (spec §5.3)
    with pytest.raises(ConfigError, match="positive_vs_negative"):
        sample_constitutions(pset, "complement", 2, random.Random(0), always_negate=["helpful"])
    with pytest.raises(ConfigError, match="only 2 exist"):
        sample_constitutions(pset, "positive_vs_negative", 4, random.Random(0), always_negate=["helpful"])


def test_drop_prefixes_filter_is_the_papers_im_sorry_rule():
    from sami_toolkit.text.postprocess import FilterOptions, filter_pair

    options = FilterOptions(drop_prefixes=["I'm sorry"])
    assert filter_pair("hh-rlhf", ["  I'm sorry, I can't.", "Sure."], options) == "starts_with:I'm sorry"
    assert filter_pair("hh-rlhf", ["Sure, and I'm sorry to hear that.", "Fine."], options) is None
    assert filter_pair("hh-rlhf", ["I'm sorry.", "x"], FilterOptions()) is None  # off by default


def test_mix_source_interleaves_and_labels_subsets(tmp_path):
    from sami_toolkit.text.query_sources import MixSource

    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"id": str(i), "text": f"{name} {i}"}) + "\n"
                                                        for i in range(3)))
    parts = [{"name": "jsonl", "options": {"path": str(tmp_path / "a.jsonl")}, "label": "helpful-base"},
             {"name": "jsonl", "options": {"path": str(tmp_path / "b.jsonl")}, "label": "harmless-base"}]
    queries = MixSource(MixSource.Options(sources=parts)).load()
    assert [q.text for q in queries] == ["a 0", "b 0", "a 1", "b 1", "a 2", "b 2"]
    assert [q.meta["subset"] for q in queries[:2]] == ["helpful-base", "harmless-base"]
    assert queries[0].id == "helpful-base:0"
    serial = MixSource(MixSource.Options(sources=parts, interleave=False, limit=4)).load()
    assert [q.text for q in serial] == ["a 0", "a 1", "a 2", "b 0"]
    with pytest.raises(ConfigError, match="same id"):
        MixSource(MixSource.Options(sources=[{"name": "jsonl", "options": {"path": str(tmp_path / "a.jsonl")}}] * 2
                                    )).load()


# ------------------------------------------------------------------------------------------- CoT post-processing
def test_sampling_prompts_and_their_post_processing():
    from sami_toolkit.text.postprocess import postprocess_sampled
    from sami_toolkit.text.prompts import get_templates, sampling_template

    t = get_templates("tldr")
    assert sampling_template(t, "generation").endswith("Summary: The post")
    assert sampling_template(t, "training").endswith("Summary:")
    assert sampling_template(t, "generation_cot").endswith("The constitution states that")
    raw = " concision matters.\n\nSummary: The tenant got a rent rise.\n\nHuman: thanks"
    assert postprocess_sampled("tldr", raw, t, "generation_cot") == "The tenant got a rent rise."
    assert postprocess_sampled("tldr", " tenant got a rise.\n\nHuman: x", t, "training") == "tenant got a rise."
    assert postprocess_sampled("tldr", " is about rent.", t, "generation") == "The post is about rent."
    with pytest.raises(ConfigError, match="chain-of-thought"):
        sampling_template(get_templates("hh-rlhf"), "generation_cot")


def test_cot_runs_use_the_cot_filters():
    from sami_toolkit.run.config import load_run_config

    cot = load_run_config(preset="paper-diverse-cot").filter_options()
    plain = load_run_config(preset="paper-diverse").filter_options()
    assert "constitution" in cot.drop_substrings and "The post" in cot.drop_substrings  # spec §2.7 (CoT)
    assert "constitution" not in plain.drop_substrings


# ------------------------------------------------------------------------------------------- bad input, up front
def _plan(tmp_path: Path, model_dir: Path, registry: Any, **changes: Any):
    import yaml

    from run_helpers import tiny_config
    from sami_toolkit.run.config import load_run_config
    from sami_toolkit.run.plan import plan_run

    path = tiny_config(tmp_path, model_dir, **changes)
    return plan_run(load_run_config(path), registry=registry), yaml.safe_load(path.read_text())


@pytest.mark.parametrize("changes, message", [
    ({"task": "hh-rlhf", "principles": "hh-rlhf", "sampling_prompt": "generation_cot"}, "chain-of-thought"),
    ({"principles": "tldr-mistral", "evaluators": [{"name": "mi-sampled", "options": {"principles": "ood"}}]},
     r"evaluators\[0\] \(mi-sampled\): .*held_out_principles"),
    ({"principles": "tldr-mistral", "evaluators": [{"name": "win-rate", "options": {"prompt": "generation_cot",
                                                                                    "constitution": "sampled"}}],
      "task": "hh-rlhf"}, r"evaluators\[0\] \(win-rate\): .*chain-of-thought"),
    ({"evaluators": [{"name": "mi-instruct"}]}, r"evaluators\[0\] \(mi-instruct\): .*eval.baseline_model"),
    ({"constitutions": {"strategy": "positive_vs_negative", "n": 2,
                        "subsets": {"helpful-base": {"negate": ["kind"]}}}},
     "constitutions.subsets.helpful-base: .*no principle 'kind'"),
])
def test_plan_rejects_what_would_fail_later(tmp_path, tiny_model_dir, sami_kit_registry, changes, message):
    with pytest.raises(ConfigError, match=message):
        _plan(tmp_path, tiny_model_dir, sami_kit_registry, **changes)


def test_subset_rules_shape_the_sampled_constitutions(tmp_path, tiny_model_dir, sami_kit_registry):
    """sample_items applies a query's subset rule (order + always negated) and falls back to the plain strategy."""
    from sami_toolkit.run.config import load_run_config
    from sami_toolkit.run.plan import sample_items

    rows = [{"id": str(i), "text": f"question {i}", "subset": "helpful-base" if i % 2 else "other"} for i in range(14)]
    posts = tmp_path / "hh.jsonl"
    posts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan, data = _plan(tmp_path, tiny_model_dir, sami_kit_registry, task="hh-rlhf", principles="hh-rlhf",
                       constitutions={"strategy": "positive_vs_negative", "n": 2, "subsets": {
                           "helpful-base": {"names": ["harmless", "helpful"], "negate": ["helpful"]}}},
                       data={"source": {"name": "jsonl", "options": {"path": str(posts)}}, "pool_size": 5})
    config = load_run_config(tmp_path / "run.yaml")
    items = sample_items(config, plan, 1)
    subset = {r["id"]: r["subset"] for r in rows}
    for item in items:
        names = [name for name, _ in item["items"]]
        if subset[item["query_id"]] == "helpful-base":
            assert names == ["harmless", "helpful"]  # the code's generation order (harmless first)
            if item["index"] == 0:
                assert item["constitution"].startswith("1. " + load_principle_set("hh-rlhf").get("harmless").definition)
            else:
                assert dict(item["items"])["helpful"] is False
        else:
            assert names == ["helpful", "harmless"]  # file order, the plain strategy


def test_run_cli_refuses_an_ood_split_without_held_out_principles(tmp_path, tiny_model_dir, sami_kit_registry,
                                                                  capsys):
    """One line naming the evaluator and what to do, exit 2, before any model loads or sampling starts."""
    from run_helpers import tiny_config
    from sami_toolkit.cli import main

    path = tiny_config(tmp_path, tiny_model_dir,
                       evaluators=[{"name": "mi-sampled", "options": {"principles": "ood"}}])
    with pytest.raises(SystemExit) as exc:
        main(["run", str(path)], registry=sami_kit_registry)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "evaluators[0] (mi-sampled)" in err and "held_out_principles" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "iterations" / "1").exists()
