"""The slice of vLLM's API the adapter relies on, asserted identically against the fake and the real engine.

The fake (``tests/fake_vllm``) is only worth its speed while it behaves like vLLM.  Every behaviour it fakes is
checked here with the same assertions in both modes (``SAMI_KIT_REAL_VLLM=1`` runs them against the real CPU
build): output shapes, greedy stop handling (EOS, stop strings excluded from the text, ``finish_reason``), the
``prompt_logprobs`` layout, ``detokenize=False``, rejected requests, and what the adapter needs for teardown.
The last test (real only, run last) shuts the session's engines down through the adapter and checks that no
engine process is left and that this process got its CPUs and threads back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from conftest_paths import engine_processes, wait_for_no_engine_processes

PROMPTS = ["Summarize the post below. POST: The cat sat on the mat. Summary:",
           "Human: I have a question about my landlord. Assistant:"]

#: this process's CPUs and OpenMP setting before any engine started (collection time; the teardown test compares)
BEFORE = {"cpus": sorted(os.sched_getaffinity(0)), "omp": os.environ.get("OMP_NUM_THREADS")}


@pytest.fixture
def llm(vllm_module: Any, vllm_model_dir: Path, engine_options: dict) -> Any:
    """The engine the adapter builds for the tiny model (the session's pooled one in real mode)."""
    from sami_kit_vllm.engine import VLLMEngine, VLLMEngineOptions

    engine = VLLMEngine(VLLMEngineOptions(**engine_options))
    return engine.get(str(vllm_model_dir))


def test_generate_returns_one_output_per_prompt_in_order(vllm_module: Any, llm: Any) -> None:
    params = vllm_module.SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=6)
    tok = llm.get_tokenizer()
    results = llm.generate(PROMPTS, params, use_tqdm=False)
    assert len(results) == 2
    for prompt, result in zip(PROMPTS, results):
        assert result.prompt_token_ids == tok(prompt)["input_ids"]  # a text prompt is tokenised with specials
        assert result.prompt_logprobs is None  # not requested
        out, = result.outputs
        assert isinstance(out.text, str) and 1 <= len(out.token_ids) <= 6
        assert out.finish_reason in ("length", "stop")
        # the text is the tokens decoded without special tokens, minus a trailing incomplete UTF-8 sequence (vLLM
        # holds back text ending in U+FFFD while detokenising incrementally and drops it when the request ends)
        assert out.text == tok.decode(out.token_ids, skip_special_tokens=True).rstrip("\ufffd")
    again = llm.generate(PROMPTS[::-1], params, use_tqdm=False)
    assert [r.outputs[0].text for r in again] == [r.outputs[0].text for r in results][::-1]  # greedy, in order


def test_stop_strings_are_excluded_and_reported(vllm_module: Any, llm: Any) -> None:
    full = llm.generate(PROMPTS, vllm_module.SamplingParams(temperature=0.0, max_tokens=12), use_tqdm=False)
    text = max((r.outputs[0].text for r in full), key=len)
    assert len(text) >= 6, "the tiny model must generate some text for this test"
    stop = text[3:6]
    cut = llm.generate(PROMPTS, vllm_module.SamplingParams(temperature=0.0, max_tokens=12, stop=[stop]),
                       use_tqdm=False)
    for f, c in zip(full, cut):
        whole = f.outputs[0].text
        if stop in whole:
            assert c.outputs[0].text == whole[:whole.find(stop)]  # the stop string itself is not in the text
            assert c.outputs[0].finish_reason == "stop"
        else:
            assert c.outputs[0].text == whole


def test_eos_ends_generation_and_is_not_in_the_text(vllm_module: Any, llm: Any) -> None:
    tok = llm.get_tokenizer()
    words = "the cat sat on mat my dog friend job landlord question".split()
    prompts = [{"prompt_token_ids": tok(" ".join(words[i:] + words[:i]))["input_ids"]} for i in range(len(words))]
    free = llm.generate(prompts, vllm_module.SamplingParams(temperature=0.0, max_tokens=64, ignore_eos=True),
                        use_tqdm=False)
    hits = [(p, r.outputs[0].token_ids) for p, r in zip(prompts, free) if tok.eos_token_id in r.outputs[0].token_ids]
    if not hits:
        pytest.skip("the tiny model generates no EOS for these prompts")
    prompt, ids = hits[0]
    end = list(ids).index(tok.eos_token_id)
    stopped = llm.generate([prompt], vllm_module.SamplingParams(temperature=0.0, max_tokens=64),
                           use_tqdm=False)[0].outputs[0]
    assert stopped.finish_reason == "stop" and list(stopped.token_ids) == list(ids[:end + 1])
    assert tok.eos_token not in stopped.text


def test_prompt_logprobs_layout(vllm_module: Any, llm: Any) -> None:
    """Entry 0 is None; entry i maps token id -> Logprob(logprob, rank, ...) and holds the prompt's own token i
    (plus the top-k when k > 0); ``detokenize=False`` leaves the text empty."""
    tok = llm.get_tokenizer()
    ids = [tok.bos_token_id] + tok("The cat sat on the mat.", add_special_tokens=False)["input_ids"]
    params = vllm_module.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
    result, = llm.generate([{"prompt_token_ids": ids}], params, use_tqdm=False)
    lp = result.prompt_logprobs
    assert result.prompt_token_ids == ids and len(lp) == len(ids) and lp[0] is None
    for i in range(1, len(ids)):
        assert set(lp[i]) == {ids[i]}  # k = 0: exactly the prompt token
        entry = lp[i][ids[i]]
        assert entry.logprob <= 0 and isinstance(entry.rank, int) and entry.rank >= 1
    assert result.outputs[0].text == ""
    top = llm.generate([{"prompt_token_ids": ids}],
                       vllm_module.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=2),
                       use_tqdm=False)[0].prompt_logprobs
    for i in range(1, len(ids)):
        assert ids[i] in top[i] and 2 <= len(top[i]) <= 3
        assert top[i][ids[i]].logprob == pytest.approx(lp[i][ids[i]].logprob, abs=1e-4)
        best = min(top[i].values(), key=lambda v: v.rank)
        assert best.rank == 1 and best.logprob >= top[i][ids[i]].logprob - 1e-6


def test_a_too_long_prompt_is_rejected_and_the_engine_keeps_serving(vllm_module: Any, llm: Any,
                                                                    engine_options: dict) -> None:
    from sami_kit_vllm.engine import engine_max_model_len, is_rejected_request

    limit = engine_options["max_model_len"]
    assert engine_max_model_len(llm) == limit
    with pytest.raises(Exception) as info:
        llm.generate([{"prompt_token_ids": [5] * (limit + 10)}], vllm_module.SamplingParams(max_tokens=1),
                     use_tqdm=False)
    assert is_rejected_request(info.value), f"{type(info.value).__mro__} is not classified as a rejected request"
    assert str(limit) in str(info.value) and str(limit + 10) in str(info.value)
    ok, = llm.generate(PROMPTS[:1], vllm_module.SamplingParams(temperature=0.0, max_tokens=2), use_tqdm=False)
    assert ok.outputs[0].token_ids


def test_adapter_teardown_api_exists(vllm_module: Any, llm: Any) -> None:
    """What :meth:`VLLMEngine.close` calls: ``LLM.shutdown()`` or, on releases without it (the CPU build 0.32),
    the V1 engine core client's ``shutdown()``; and ``vllm.distributed.cleanup_dist_env_and_memory``."""
    from vllm import distributed

    target = getattr(llm, "_llm", llm)  # the real engine behind the pool's proxy
    assert callable(getattr(target, "shutdown", None)) or callable(
        getattr(getattr(getattr(target, "llm_engine", None), "engine_core", None), "shutdown", None))
    assert callable(getattr(distributed, "cleanup_dist_env_and_memory", None))


@pytest.mark.engine_teardown
def test_closing_the_engines_leaves_no_engine_process_and_frees_the_cpus(engine_pool: Any) -> None:
    """Real only, run last: every pooled engine is shut down with the adapter's own teardown; afterwards no engine
    process of this session is alive, and this process has all its CPUs and its OpenMP setting (vLLM's CPU backend
    pins its worker to a core and reserves another; training runs in this process next)."""
    from sami_kit_vllm.engine import VLLMEngine, VLLMEngineOptions

    assert engine_pool.engines, "no engine was started in this session"
    alive = engine_processes(under=os.getpid())
    assert any(t.startswith("VLLM::Engine") for t in alive.values()), alive  # comm: 15 characters
    for key, pooled in list(engine_pool.engines.items()):
        engine = VLLMEngine(VLLMEngineOptions())
        engine.llm, engine.model_path = pooled._llm, "pooled"
        engine.close()  # LLM.shutdown / engine_core.shutdown, then vllm.distributed cleanup, gc
        del engine_pool.engines[key]
    left = wait_for_no_engine_processes(set(alive), timeout=20)
    assert not left, f"engine processes still alive after close(): {left}"
    assert sorted(os.sched_getaffinity(0)) == BEFORE["cpus"]
    assert os.environ.get("OMP_NUM_THREADS") == BEFORE["omp"]
