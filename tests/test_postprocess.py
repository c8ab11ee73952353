"""Response post-processing and pair filtering (spec §2.7)."""

from __future__ import annotations

import pytest

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.text.postprocess import FilterOptions, default_filter_options, filter_pair, postprocess_response
from sami_toolkit.text.prompts import get_templates

TLDR = get_templates("tldr")
HH = get_templates("hh-rlhf")


def test_tldr_prefix_strip_and_cut_at_human_and_hashes():
    # the prompt pre-fills "Summary: The post", so the continuation lacks it (spec §2.7 steps 1-3)
    raw = " describes a lost dog found by a neighbour.\n\nHuman: Thank you for this great summary!"
    assert postprocess_response("tldr", raw, TLDR) == "The post describes a lost dog found by a neighbour."
    raw = " asks for advice on a job offer. ### Main Task\nSummarization Constitution:"
    assert postprocess_response("tldr", raw, TLDR) == "The post asks for advice on a job offer."
    assert postprocess_response("tldr", "   \n", TLDR) == ""  # no bare "The post" for an empty continuation


def test_hh_cut_at_next_turn_and_hashes():
    raw = " You could try a cast-iron pan.\n\nHuman: thanks\n\nAssistant: welcome"
    assert postprocess_response("hh-rlhf", raw, HH) == "You could try a cast-iron pan."
    assert postprocess_response("hh", " Sure thing.\n### Example Format", HH) == "Sure thing."
    # "Human" without the blank line before it is part of the answer for HH
    assert postprocess_response("hh-rlhf", " Ask a Human: resources team.", HH) == "Ask a Human: resources team."


def test_cot_extracts_summary_until_blank_line():
    raw = ("concise summaries matter. The post is long.\nSummary: A student asks how to study.\n\n"
           "Human: thanks")
    assert postprocess_response("tldr", raw, TLDR, cot=True) == "A student asks how to study."
    assert postprocess_response("tldr", "no summary marker at all", TLDR, cot=True) == ""


def test_instruct_and_unprefilled_outputs_get_no_prefix():
    # spec §7.4: TL;DR instruct outputs are stripped and cut at "###" only
    raw = "  A user asks whether Human: Resources can fire them. ### extra"
    assert postprocess_response("tldr", raw, TLDR, instruct=True) == "A user asks whether Human: Resources can fire them."
    assert postprocess_response("hh-rlhf", " Sure.\n\nHuman: more", HH, instruct=True) == "Sure."
    assert postprocess_response("tldr", " A summary.\n\nHuman: hi", TLDR, add_prefix=False) == "A summary."


def test_generic_cuts_at_template_stop_strings():
    templates = get_templates("generic", {"stop": ["\nQ:"]})
    assert postprocess_response("generic", " An answer.\nQ: next question", templates) == "An answer."


def test_tldr_filter_rules():
    opts = default_filter_options("tldr")
    good = ["The post is about a cat.", "The post rambles on about cats"]
    assert filter_pair("tldr", good, opts) is None
    assert filter_pair("tldr", ["The post [insert summary here].", "The post x."], opts) == "contains:[insert"
    assert filter_pair("tldr", ["The post is fine.", "The post cites [1]"], opts) == "contains:]"
    assert filter_pair("tldr", ["Response: The post.", "The post y."], opts) == "contains:Response"
    assert filter_pair("tldr", ["The post was cut off at max tok", "The post y."], opts) == "positive_no_period"
    # the period rule only concerns the positive response
    assert filter_pair("tldr", ["The post y.", "The post was cut off"], opts) is None
    assert filter_pair("tldr", ["The post y.", "The post y."], opts) == "identical"
    assert filter_pair("tldr", ["The post y.", ""], opts) == "empty"
    # "sorry" is only in the dev config, not the paper's tldr filter; case-sensitive substrings
    assert filter_pair("tldr", ["The post says sorry.", "The post response."], opts) is None


def test_hh_filter_rules():
    opts = default_filter_options("hh-rlhf")
    assert filter_pair("hh-rlhf", ["Sure, here is how", "Sure, here is how"], opts) is None  # no equality check
    assert filter_pair("hh-rlhf", ["I'm sorry, I can't.", "Here you go."], opts) == "contains:sorry"
    assert filter_pair("hh-rlhf", ["The assistant says hi", "Hi."], opts) == "contains:The assistant"
    assert filter_pair("hh-rlhf", ["no period here", "x"], opts) is None


def test_cot_filter_defaults_and_options():
    opts = default_filter_options("tldr", cot=True)
    assert filter_pair("tldr", ["The post is short.", "Short."], opts) == "contains:The post"
    relaxed = FilterOptions(require_positive_period=False, require_distinct=False, max_chars=10)
    assert filter_pair("tldr", ["no period", "no period"], relaxed) is None
    assert filter_pair("tldr", ["x" * 11, "y"], relaxed) == "too_long"
    no_positive = default_filter_options("tldr")
    assert filter_pair("tldr", ["no period a", "no period b"], no_positive, positive_index=None) is None
    assert filter_pair("tldr", ["a.", "no period"], no_positive, positive_index=1) == "positive_no_period"
    with pytest.raises(ConfigError, match="out of range"):
        filter_pair("tldr", ["a.", "b."], no_positive, positive_index=2)


def test_filter_options_reject_unknown_keys_and_tasks():
    with pytest.raises(Exception, match="drop_substring"):
        FilterOptions(drop_substring=["x"])
    with pytest.raises(ConfigError, match="unknown task"):
        default_filter_options("summaries-of-things")
