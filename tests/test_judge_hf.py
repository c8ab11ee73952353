"""The built-in ``hf`` judge on a tiny random model: verdicts from next-token probabilities, batching, limits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sami_toolkit.core.records import JudgeItem
from sami_toolkit.core.errors import ConfigError
from sami_toolkit.judging.pairwise import ComparisonPair, count_outcomes, judge_pairs
from sami_toolkit import get_component

PROB = re.compile(r"P\(A\)=([0-9.e-]+) P\(B\)=([0-9.e-]+)")


def _items(n: int) -> list[JudgeItem]:
    return [JudgeItem(id=f"i{k}", query=f"POST: my cat sat on the mat {k}", constitution="1. Summaries should be brief.",
                      response_a="The cat sat." * (1 + k % 3), response_b="The post is about my landlord and my job.",
                      task="tldr") for k in range(n)]


def test_hf_judge_verdicts_follow_the_probabilities(tiny_model_dir: Path) -> None:
    judge = get_component("judges", "hf", {"model": str(tiny_model_dir), "batch_size": 3})
    items = _items(5)
    judgments = judge.judge(items)
    assert [j.id for j in judgments] == [i.id for i in items]
    for j in judgments:
        match = PROB.search(j.raw)
        assert match, j.raw
        p_a, p_b = float(match.group(1)), float(match.group(2))
        assert 0 < p_a < 1 and 0 < p_b < 1
        assert j.verdict == ("A" if p_a > p_b else "B")
        assert j.raw.endswith(f"Final Response: {j.verdict}") and j.error is None and not j.cached
    # batching (right padding, last real position) gives the same probabilities as one item at a time
    single = get_component("judges", "hf", {"model": str(tiny_model_dir), "batch_size": 1}).judge(items)
    for a, b in zip(judgments, single):
        pa, pb = (float(x) for x in PROB.search(a.raw).groups())  # type: ignore[union-attr]
        sa, sb = (float(x) for x in PROB.search(b.raw).groups())  # type: ignore[union-attr]
        assert pa == pytest.approx(sa, rel=1e-4) and pb == pytest.approx(sb, rel=1e-4)


def test_hf_judge_prompt_ends_with_answer_prefix_and_swaps_change_it(tiny_model_dir: Path) -> None:
    judge = get_component("judges", "hf", {"model": str(tiny_model_dir)})
    judge._load()
    item = _items(1)[0]
    text = judge.render(item)
    assert text.endswith("Final Response:") and "Summary A: " + item.response_a in text
    outcomes = judge_pairs(judge, [ComparisonPair(id=i.id, query=i.query, constitution=i.constitution,
                                                  candidate=i.response_a, baseline=i.response_b, task="tldr")
                                   for i in _items(6)], both_orders=True)
    counts = count_outcomes(outcomes)
    assert counts["failed"] == 0 and sum(counts[k] for k in ("wins", "losses", "ties")) == 6


def test_hf_judge_tie_margin_and_too_long_prompts(tiny_model_dir: Path) -> None:
    everything_ties = get_component("judges", "hf", {"model": str(tiny_model_dir), "tie_margin": 1.0})
    assert {j.verdict for j in everything_ties.judge(_items(3))} == {"tie"}
    short = get_component("judges", "hf", {"model": str(tiny_model_dir), "max_length": 20})
    judgments = short.judge(_items(2))
    assert all(j.verdict == "failed" and "max_length=20" in (j.error or "") for j in judgments)


def test_hf_judge_rejects_a_template_without_both_responses() -> None:
    with pytest.raises(ConfigError, match="response_b"):
        get_component("judges", "hf", {"template": "Is {response_a} good?"})


@pytest.mark.slow
def test_hf_judge_with_smollm2_uses_the_chat_template(smollm2_dir: Path) -> None:
    judge = get_component("judges", "hf", {"model": str(smollm2_dir), "dtype": "bfloat16"})
    items = _items(1)
    judgments = judge.judge(items)
    assert judge.render(items[0]).endswith("<|im_start|>assistant\nFinal Response:")
    for j in judgments:
        p_a, p_b = (float(x) for x in PROB.search(j.raw).groups())  # type: ignore[union-attr]
        assert j.verdict in ("A", "B") and j.verdict == ("A" if p_a > p_b else "B")
        # an instruct model puts far more mass on the two letters than a uniform guess over its vocabulary would
        assert p_a + p_b > 100 / 49152


def test_hf_judge_head_on_last_positions_matches_a_full_forward(tiny_model_dir: Path) -> None:
    import torch

    judge = get_component("judges", "hf", {"model": str(tiny_model_dir)})
    judge._load()
    ids = torch.tensor([judge._tokenizer.encode(judge.render(_items(1)[0]))])
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        fast = judge._last_logits(ids, mask, torch.tensor([ids.shape[1] - 1]))
        full = judge._model(input_ids=ids, attention_mask=mask).logits[:, -1]
    torch.testing.assert_close(fast, full, rtol=1e-4, atol=1e-5)
