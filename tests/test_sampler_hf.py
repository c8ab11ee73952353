"""The `hf` sampler on a tiny random model: batching with left padding must not change greedy output."""

from __future__ import annotations

import pytest
from run_helpers import one_thread  # noqa: F401 (autouse fixture)

from sami_toolkit.plugins.registry import get_component
from sami_toolkit.builtin.hf_sampler import cut_at_stop

PROMPTS = [
    "Summarize the post below. POST: The cat sat on the mat. Summary: The post",
    "Human: I have a question about my landlord and my dog",
    "1. concise 2.",
    "Summaries should be brief and to the point, avoiding unnecessary details. I have a question about my job",
]


def test_registered_with_defaults():
    sampler = get_component("samplers", "hf")
    assert sampler.options.max_new_tokens == 350  # spec §2.3
    assert sampler.options.temperature == 0.0


def test_batched_equals_one_by_one(tiny_model_dir):
    batched = get_component("samplers", "hf", {"max_new_tokens": 6, "batch_size": 4, "dtype": "float32"})
    single = get_component("samplers", "hf", {"max_new_tokens": 6, "batch_size": 1, "dtype": "float32"})
    seen = []
    out_batched = batched.generate(str(tiny_model_dir), PROMPTS, progress=seen.append)
    out_single = single.generate(str(tiny_model_dir), PROMPTS)
    assert out_batched == out_single
    assert sum(seen) == len(PROMPTS)
    assert all(isinstance(t, str) for t in out_batched)
    # the continuation only: no prompt text echoed back in front
    assert not any(t.startswith(p) for t, p in zip(out_batched, PROMPTS))


def test_model_cached_and_closed(tiny_model_dir):
    sampler = get_component("samplers", "hf", {"max_new_tokens": 2, "dtype": "float32"})
    sampler.generate(str(tiny_model_dir), PROMPTS[:1])
    first = sampler._model
    sampler.generate(str(tiny_model_dir), PROMPTS[1:2])
    assert sampler._model is first
    sampler.close()
    assert sampler._model is None


def test_stop_strings_cut(tiny_model_dir):
    plain = get_component("samplers", "hf", {"max_new_tokens": 8, "dtype": "float32"})
    texts = plain.generate(str(tiny_model_dir), PROMPTS)
    # pick a stop string that occurs inside one of the unconstrained outputs
    target = next((t for t in texts if len(t.strip()) >= 4), None)
    if target is None:
        pytest.skip("the random model produced only empty continuations")
    stop = target.strip()[1:3]
    stopped = get_component("samplers", "hf", {"max_new_tokens": 8, "stop": [stop], "dtype": "float32"})
    cut = stopped.generate(str(tiny_model_dir), PROMPTS)
    for full, short in zip(texts, cut):
        assert stop not in short
        assert full.startswith(short)
    assert any(len(s) < len(f) for f, s in zip(texts, cut))


def test_cut_at_stop():
    assert cut_at_stop("abc###def\n\nHuman: x", ["\n\nHuman", "###"]) == "abc"
    assert cut_at_stop("no stop here", ["###"]) == "no stop here"
    assert cut_at_stop("x", []) == "x"


def test_missing_model_path_is_config_error(tmp_path):
    from sami_toolkit.core.errors import ConfigError

    sampler = get_component("samplers", "hf", {"max_new_tokens": 2})
    with pytest.raises(ConfigError, match="does not exist"):
        sampler.generate(str(tmp_path / "nope"), ["hi"])
