"""Shared judging logic: strict parsing, seeded positions, both-orders reconciliation, outcome bookkeeping."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from sami_toolkit.core.components import Judge
from sami_toolkit.core.records import JudgeItem, Judgment
from sami_toolkit.core.errors import ConfigError
from sami_toolkit.judging.pairwise import (
    ComparisonPair,
    assign_positions,
    check_template,
    combine_orders,
    count_outcomes,
    judge_pairs,
    judge_templates,
    parse_final_answer,
    render_template,
)


@pytest.mark.parametrize("text, expected", [
    ("Comparison: A is shorter.\nFinal Response: A", "A"),
    ("Comparison: ...\n\nFinal Response: B", "B"),
    ("**Final Response:** **A**", "A"),
    ("Final Response: \"B\"", "B"),
    ("Final Response: 'A'.", "A"),
    ("Final Response: [[B]]", "B"),
    ("Final Response: `A`", "A"),
    ("final response: B  ", "B"),
    ("Final Response:\n\nA\n(because it is concise)", "A"),
    ("Final Response: A\nsome trailing remark", "A"),
    ("Final Response: B\n...\nFinal Response: A", "A"),  # the last marker counts
    ("Final Response: tie", "tie"),
])
def test_parser_accepts_only_a_bare_letter(text: str, expected: str) -> None:
    assert parse_final_answer(text) == expected


@pytest.mark.parametrize("text", [
    "",
    "junk",
    "Comparison: A is better.",  # no marker at all
    "Final Response: A and B",  # the paper's substring count would call this a tie
    "Final Response: Both A and B",
    "Final Response: Summary A",
    "Final Response: C",
    "Final Response: a",  # the paper's check was case-sensitive too
    "Final Response: <\"A\" or \"B\">",  # the judge echoed the format line
    "Final Response:",
    "Final Response: AB",
    "Final Response: Neither",
])
def test_parser_rejects_anything_else(text: str) -> None:
    assert parse_final_answer(text) is None


def test_positions_are_seeded_balanced_and_match_the_paper_rule() -> None:
    import numpy as np

    first = assign_positions(2000, seed=1)
    assert first == assign_positions(2000, seed=1)
    assert first != assign_positions(2000, seed=2)
    share_a = first.count("A") / len(first)
    assert 0.46 < share_a < 0.54
    # spec §8.3: np.random.seed(1); randint(2) per item; 1 means the tested model is A
    np.random.seed(1)
    paper = ["A" if np.random.randint(2) == 1 else "B" for _ in range(50)]
    assert assign_positions(50, seed=1) == paper


class ScriptedJudge(Judge):
    """Prefers the response containing 'good'; optionally always says one letter, or fails some items."""

    name = "scripted"

    def __init__(self, always: str | None = None, fail_ids: Sequence[str] = ()) -> None:
        super().__init__()
        self.always = always
        self.fail_ids = set(fail_ids)
        self.seen: list[JudgeItem] = []

    def judge(self, items: Sequence[JudgeItem], *, progress: Any = None) -> list[Judgment]:
        out = []
        for item in items:
            self.seen.append(item)
            if item.id in self.fail_ids:
                out.append(Judgment(id=item.id, verdict="failed", error="boom"))
            elif self.always:
                out.append(Judgment(id=item.id, verdict=self.always, raw=f"Final Response: {self.always}", cost=0.01))
            else:
                verdict = "A" if "good" in item.response_a else "B"
                out.append(Judgment(id=item.id, verdict=verdict, raw=f"Final Response: {verdict}", cost=0.01))
            if progress is not None:
                progress(1)
        return out


def _pairs(n: int, candidate_good: bool = True) -> list[ComparisonPair]:
    good, bad = ("good answer", "bad answer") if candidate_good else ("bad answer", "good answer")
    return [ComparisonPair(id=f"q{i}", query=f"question {i}", constitution="1. Be good.", candidate=f"{good} {i}",
                           baseline=f"{bad} {i}") for i in range(n)]


def test_judge_pairs_maps_positions_back_to_the_candidate() -> None:
    judge = ScriptedJudge()
    outcomes = judge_pairs(judge, _pairs(40))
    assert [o.outcome for o in outcomes] == [1.0] * 40
    positions = [o.candidate_position for o in outcomes]
    assert positions == assign_positions(40, seed=1)
    for item, o in zip(judge.seen, outcomes):  # the candidate really sat in the slot reported
        slot_text = item.response_a if o.candidate_position == "A" else item.response_b
        assert slot_text.startswith("good answer")
    assert all(o.cost == pytest.approx(0.01) and not o.cached for o in outcomes)
    losing = judge_pairs(ScriptedJudge(), _pairs(10, candidate_good=False))
    assert [o.outcome for o in losing] == [0.0] * 10


def test_both_orders_position_bias_becomes_ties_and_agreement_is_kept() -> None:
    biased = ScriptedJudge(always="A")
    outcomes = judge_pairs(biased, _pairs(12), both_orders=True)
    assert len(biased.seen) == 24
    assert all(o.outcome == 0.5 and o.verdicts == ["A", "A"] for o in outcomes)
    assert all(len(o.raw) == 2 for o in outcomes)
    consistent = judge_pairs(ScriptedJudge(), _pairs(12), both_orders=True)
    assert all(o.outcome == 1.0 for o in consistent)
    # the two orders really swap the slots
    firsts = [o.candidate_position for o in consistent]
    assert firsts == assign_positions(12, seed=1)


def test_a_failed_order_fails_the_item_and_counts_add_up() -> None:
    pairs = _pairs(10)
    positions = assign_positions(10, seed=1)
    # fail the second order of q3 and the only order of nothing else
    second = "B" if positions[3] == "A" else "A"
    judge = ScriptedJudge(fail_ids=[f"q3#{second}"])
    outcomes = judge_pairs(judge, pairs, both_orders=True)
    assert outcomes[3].outcome is None and outcomes[3].failed and outcomes[3].error == "boom"
    assert "failed" in outcomes[3].verdicts
    counts = count_outcomes(outcomes)
    assert counts == {"wins": 9, "losses": 0, "ties": 0, "failed": 1, "n": 10}
    assert counts["wins"] + counts["losses"] + counts["ties"] + counts["failed"] == counts["n"]


def test_combine_orders_rules() -> None:
    assert combine_orders(["A", "B"], ["A", "B"]) == 1.0
    assert combine_orders(["B", "A"], ["A", "B"]) == 0.0
    assert combine_orders(["A", "A"], ["A", "B"]) == 0.5
    assert combine_orders(["tie", "A"], ["A", "B"]) == 0.5
    assert combine_orders(["A", "failed"], ["A", "B"]) is None
    assert combine_orders(["tie"], ["B"]) == 0.5


def test_templates_render_only_known_placeholders() -> None:
    system, user = judge_templates("tldr")
    assert "reddit post summaries" in system and "{response_a}" in user
    assert judge_templates("hh")[1] == judge_templates("hh-rlhf")[1]
    assert judge_templates("summarize legal contracts") == judge_templates("generic")
    text = render_template("Q: {query} A: {response_a} B: {response_b} {other}",
                           {"query": "x {response_b} y", "response_a": "{}", "response_b": "b"})
    assert text == "Q: x {response_b} y A: {} B: b {other}"
    with pytest.raises(ConfigError, match="response_b"):
        check_template("Which is better: {response_a}?", where="judges.x.options.template")
