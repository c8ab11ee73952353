"""The `hf` sampler on a tiny random model: batching with left padding must not change greedy output, and every
prompt reaches the model with exactly one BOS (chat prompts, sampler and scorer agree, spec §7.4)."""

from __future__ import annotations

import pytest
from run_helpers import one_thread  # noqa: F401 (autouse fixture)

from sami_toolkit import get_component
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


# ------------------------------------------------------------------------------------------------ one BOS
#: a Mistral-style chat template: its rendered string starts with the BOS text, as Mistral/Llama-2 templates do
BOS_CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}")


@pytest.fixture
def chat_model_dir(tiny_model_dir, tmp_path):
    """The tiny model with a chat template that emits a BOS (its tokenizer adds one too, like Mistral's)."""
    import shutil

    from transformers import AutoTokenizer

    target = tmp_path / "tiny-chat"
    shutil.copytree(tiny_model_dir, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    tokenizer.chat_template = BOS_CHAT_TEMPLATE
    tokenizer.save_pretrained(target)
    return target


def _bos_count_at_start(ids, bos):
    n = 0
    while n < len(ids) and ids[n] == bos:
        n += 1
    return n


def test_chat_prompts_start_with_one_bos(chat_model_dir):
    """spec §7.4: the template's leading <s> is removed, so the sampler's own BOS is the only one."""
    from sami_toolkit.models.loading import load_tokenizer
    from sami_toolkit.sampling.generation import chat_prompts

    tokenizer = load_tokenizer(str(chat_model_dir))
    bos = tokenizer.bos_token_id
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False,
                                             add_generation_prompt=True)
    assert rendered.startswith("<s>") and _bos_count_at_start(tokenizer(rendered)["input_ids"], bos) == 2  # the bug
    prompts, note = chat_prompts(str(chat_model_dir), ["hello", "my landlord"])
    assert note is None
    for prompt in prompts:
        assert prompt.startswith("[INST] ")
        ids = tokenizer(prompt)["input_ids"]
        assert ids[0] == bos and ids.count(bos) == 1


def test_hf_sampler_feeds_one_bos_whatever_the_prompt_starts_with(chat_model_dir):
    """A prompt that already starts with the BOS text (a chat rendering passed straight in) and a plain one both
    reach generate with exactly one BOS, after the left padding."""
    from sami_toolkit.models.loading import strip_leading_bos

    sampler = get_component("samplers", "hf", {"max_new_tokens": 1, "batch_size": 4, "dtype": "float32"})
    lm, tokenizer = sampler.load(str(chat_model_dir))
    seen = []
    original = lm.generate

    def recording_generate(**kwargs):
        seen.append((kwargs["input_ids"].tolist(), kwargs["attention_mask"].tolist()))
        return original(**kwargs)

    lm.generate = recording_generate
    prompts = ["<s>[INST] hello [/INST]", "[INST] my landlord and my dog [/INST]", "The cat sat on the mat."]
    sampler.generate(str(chat_model_dir), prompts)
    bos = tokenizer.bos_token_id
    (ids, mask), = seen
    for row, row_mask in zip(ids, mask):
        tokens = [t for t, m in zip(row, row_mask) if m]
        assert tokens[0] == bos and tokens.count(bos) == 1, tokens
    assert strip_leading_bos(tokenizer, "no bos here") == "no bos here"


def test_a_tokenizer_that_adds_no_bos_keeps_the_templates_one(chat_model_dir):
    """Stripping is only right when the tokenizer puts the BOS back: one that does not add it keeps the text's."""
    from sami_toolkit.models.loading import load_tokenizer, strip_leading_bos

    tokenizer = load_tokenizer(str(chat_model_dir))
    assert strip_leading_bos(tokenizer, "<s>[INST] hi [/INST]") == "[INST] hi [/INST]"
    tokenizer._tokenizer.post_processor = None  # now encode() adds nothing
    assert tokenizer("x")["input_ids"][:1] != [tokenizer.bos_token_id]
    assert strip_leading_bos(tokenizer, "<s>[INST] hi [/INST]") == "<s>[INST] hi [/INST]"


def test_scorer_puts_one_bos_before_a_chat_rendered_prompt(chat_model_dir):
    """The scorer agrees with the sampler: one BOS, whether or not the prompt text starts with it."""
    from sami_toolkit.models.loading import load_tokenizer
    from sami_toolkit.training.scoring import ScoringOptions, encode

    tokenizer = load_tokenizer(str(chat_model_dir))
    enc = encode(tokenizer, [["<s>[INST] hello [/INST]", "[INST] hello [/INST]"]], [[" The cat", " The dog"]],
                 ScoringOptions())
    first, second = enc.prompts[0]
    bos = tokenizer.bos_token_id
    assert first == second and first[0] == bos and first.count(bos) == 1
