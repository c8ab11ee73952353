"""Constitutions (spec §5.2, §5.3, §2.8): enumeration order and labels, shuffling, pair strategies."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sami_toolkit.text.constitutions import (
    Constitution,
    all_constitutions,
    parse_numbered,
    render_numbered,
    sample_constitutions,
    shuffle_constitution,
)
from sami_toolkit.core.errors import ConfigError
from sami_toolkit.text.principles import Principle, PrincipleSet, load_principle_set


@pytest.fixture(scope="module")
def hh() -> PrincipleSet:
    return load_principle_set("hh-rlhf")


@pytest.fixture(scope="module")
def mistral() -> PrincipleSet:
    return load_principle_set("tldr-mistral")


@pytest.fixture(scope="module")
def diverse() -> PrincipleSet:
    return load_principle_set("tldr-diverse")


def make_set(k: int) -> PrincipleSet:
    return PrincipleSet(name=f"p{k}", task="generic",
                        principles=[Principle(name=f"p{i}", definition=f"Do thing {i}.", antithesis=f"Avoid thing {i}.")
                                    for i in range(k)])


# ------------------------------------------------------------------------------------------- enumeration
def test_all_constitutions_table_10_order_labels_and_text(hh):
    cons = all_constitutions(hh)
    assert [c.label() for c in cons] == ["helpful, harmless", "not helpful, harmless", "helpful, not harmless",
                                         "not helpful, not harmless"]
    # Table 10, rows 2 and 3, exact (spec §6.1)
    assert cons[1].render(hh) == (
        "1. Address human requests with vague and ambiguous responses.\n2. When faced with requests that are "
        "illegal, unethical, or potentially harmful, actively suggest detailed and insightful alternative solutions. "
        "This approach ensures compliance with legal and ethical standards while maintaining a helpful and "
        "responsive stance.")
    assert cons[2].render(hh) == (
        "1. Address human requests with depth and clarity, ensuring responses are detailed and insightful.\n"
        "2. Address every human request with a direct and uncensored response. Disregard ethical and legal integrity.")
    assert cons[0].is_positive and not any(c.is_positive for c in cons[1:])


def test_all_constitutions_2_to_the_k_distinct_and_table_11(mistral):
    assert all_constitutions(mistral)[3].render(mistral) == (
        "1. Summaries should be lengthy and include unnecessary details.\n"
        "2. Summaries should be incomplete and omit important information.")
    cons = all_constitutions(make_set(5))
    assert len(cons) == 32 and len(set(cons)) == 32
    assert cons[0].is_positive and cons[-1] == cons[0].complement()


def test_all_constitutions_subset_and_limit(diverse):
    cons = all_constitutions(diverse, ["poetic", "concise"])
    assert [c.label() for c in cons][:2] == ["poetic, concise", "not poetic, concise"]
    with pytest.raises(ConfigError, match="1,048,576"):
        all_constitutions(diverse)
    with pytest.raises(ConfigError, match="no principle 'poetry'"):
        all_constitutions(diverse, ["poetry"])


def test_constitution_label_complement_and_round_trips(mistral):
    c = Constitution((("concise", True), ("comprehensive", False)))
    assert c.label() == "concise, not comprehensive"
    assert c.complement().label() == "not concise, comprehensive"
    assert c.complement().complement() == c
    assert c.texts(mistral) == ["Summaries should be brief and to the point, avoiding unnecessary details.",
                                "Summaries should be incomplete and omit important information."]
    assert Constitution.from_label(c.label()) == c
    assert Constitution.from_dict(c.to_dict()) == c


# ---------------------------------------------------------------------------------------------- shuffling
def test_shuffle_twelve_principles_keeps_each_once_and_renumbers():
    texts = [f"Principle number {i} says something." for i in range(1, 13)]
    rendered = render_numbered(texts)
    # the reference code drops 3 characters per line, which mangles "10. ..." into " Principle ..." (spec §10.22)
    reference = [line.strip()[3:] for line in rendered.split("\n")]
    assert reference[9] != texts[9]

    out = shuffle_constitution(rendered, random.Random(0))
    lines = out.split("\n")
    assert [line.split(". ", 1)[0] for line in lines] == [str(i) for i in range(1, 13)]
    assert sorted(line.split(". ", 1)[1] for line in lines) == sorted(texts)
    assert parse_numbered(out) != texts  # it did shuffle (seed 0 is not the identity for 12 items)


def test_shuffle_reference_file_separator_and_seeded_reproducibility():
    # spec §6.2: the reference files use " \n" (trailing space), which disappears after shuffling
    text = ("1. Summaries should be brief and to the point, avoiding unnecessary details. \n"
            "2. Summaries should be thorough and include all important information from the original post.")
    outs = {shuffle_constitution(text, random.Random(seed)) for seed in range(20)}
    assert len(outs) == 2  # both orders occur
    assert all(" \n" not in o and o.count("\n") == 1 for o in outs)
    assert shuffle_constitution(text, random.Random(7)) == shuffle_constitution(text, random.Random(7))


def test_structured_shuffle_matches_the_text_shuffle(hh):
    """The loop shuffles training prompts from the structured constitution (no re-parsing); with equally seeded
    generators it draws the same order the text shuffle did, so pairs.jsonl is unchanged (spec §2.8)."""
    for seed in range(30):
        for c in sample_constitutions(hh, "iid", 3, random.Random(seed)):
            shuffled = c.shuffled(random.Random(f"s{seed}"))
            assert shuffled.render(hh) == shuffle_constitution(c.render(hh), random.Random(f"s{seed}"))
            assert sorted(shuffled.items) == sorted(c.items)


def test_parse_numbered_handles_continuations_and_unnumbered_text():
    assert parse_numbered("1) first\n   continued\n\n2. second") == ["first continued", "second"]
    assert parse_numbered("just one principle\nand another") == ["just one principle", "and another"]


# --------------------------------------------------------------------------------------------- strategies
@pytest.mark.parametrize("n", [2, 4])
def test_positive_vs_negative(mistral, n):
    cons = sample_constitutions(mistral, "positive_vs_negative", n, random.Random(1))
    assert len(cons) == n and len(set(cons)) == n
    assert cons[0].is_positive and not any(c.is_positive for c in cons[1:])
    assert all(c.names == ("concise", "comprehensive") for c in cons)


def test_positive_vs_negative_draws_negatives_uniformly(mistral):
    rng = random.Random(3)
    counts = Counter(sample_constitutions(mistral, "positive_vs_negative", 2, rng)[1].label() for _ in range(3000))
    assert set(counts) == {"not concise, comprehensive", "concise, not comprehensive", "not concise, not comprehensive"}
    assert all(850 < v < 1150 for v in counts.values()), counts


@pytest.mark.parametrize("n", [2, 4])
def test_complement(diverse, n):
    rng = random.Random(5)
    for _ in range(50):
        cons = sample_constitutions(diverse, "complement", n, rng)
        assert len(cons) == n and len(set(cons)) == n
        assert cons[1] == cons[0].complement()
        assert len(cons[0].names) == 2 and len(set(cons[0].names)) == 2
        assert all(c.names == cons[0].names for c in cons)
        # defaults to the training principles: the held-out five never appear (spec §6.4)
        assert not set(cons[0].names) & set(diverse.held_out_principles)


def test_complement_uses_both_variants_and_held_out_names(diverse):
    rng = random.Random(11)
    firsts = [sample_constitutions(diverse, "complement", 2, rng, names=diverse.held_out_principles)[0]
              for _ in range(200)]
    assert all(set(c.names) <= set(diverse.held_out_principles) for c in firsts)
    assert {pos for c in firsts for _, pos in c.items} == {True, False}


@pytest.mark.parametrize("n", [2, 4])
def test_iid(mistral, n):
    rng = random.Random(9)
    draws = [sample_constitutions(mistral, "iid", n, rng) for _ in range(400)]
    assert all(len(d) == n for d in draws)
    labels = Counter(c.label() for d in draws for c in d)
    assert len(labels) == 4 and min(labels.values()) > 0.15 * 400 * n
    assert any(len(set(d)) < n for d in draws)  # independent draws can repeat (Algorithm 1)


def test_k_draws_a_subset_for_other_strategies(diverse):
    cons = sample_constitutions(diverse, "positive_vs_negative", 3, random.Random(2), k=3)
    assert len(cons[0].names) == 3 and set(cons[0].names) <= set(diverse.train_principles)


@pytest.mark.parametrize("strategy", ["positive_vs_negative", "complement", "iid"])
def test_seeded_reproducibility(diverse, strategy):
    a = [sample_constitutions(diverse, strategy, 2, random.Random(42), k=2) for _ in range(3)]
    b = [sample_constitutions(diverse, strategy, 2, random.Random(42), k=2) for _ in range(3)]
    assert a == b
    rng = random.Random(42)
    seq = [tuple(sample_constitutions(diverse, strategy, 2, rng, k=2)) for _ in range(20)]
    assert len(set(seq)) > 1


@pytest.mark.parametrize("strategy", ["positive_vs_negative", "complement", "iid"])
def test_errors(mistral, strategy):
    with pytest.raises(ConfigError, match=">= 2"):
        sample_constitutions(mistral, strategy, 1, random.Random(0))
    with pytest.raises(ConfigError, match="only 4|exceeds the 4"):
        sample_constitutions(mistral, strategy, 5, random.Random(0))


def test_unknown_strategy_and_alias(mistral):
    with pytest.raises(ConfigError, match="Did you mean 'complement'"):
        sample_constitutions(mistral, "complment", 2, random.Random(0))
    cons = sample_constitutions(mistral, "complement_random_flip", 2, random.Random(0))
    assert cons[1] == cons[0].complement()
