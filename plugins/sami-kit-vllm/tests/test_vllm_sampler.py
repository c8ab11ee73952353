"""The ``vllm`` sampler against the fake vllm (or the real one with SAMI_KIT_REAL_VLLM=1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sami_toolkit.core.errors import ConfigError, ExitCode, InfrastructureError

PROMPTS = [
    "Summarize the post below. POST: The cat sat on the mat. Summary:",
    "Human: I have a question about my landlord. Assistant:",
    "Summaries should be brief. POST: my dog and my friend. Summary:",
]


def _sampler(**options: Any) -> Any:
    from sami_toolkit import get_component

    return get_component("samplers", "vllm", options)


def test_plugin_registers_without_importing_vllm_or_torch() -> None:
    code = ("import sys, sami_kit_vllm; from sami_toolkit import load_plugins; r = load_plugins(); "
            "print(r.get('samplers', 'vllm').__name__, r.get('evaluators', 'mi-vllm').__name__, "
            "'vllm' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["VLLMSampler", "VLLMMIEvaluator", "False", "False"]


def test_missing_vllm_is_an_infrastructure_error_with_install_hint(no_vllm: None, vllm_model_dir: Path) -> None:
    sampler = _sampler()
    with pytest.raises(InfrastructureError) as info:
        sampler.generate(str(vllm_model_dir), ["hello"])
    assert info.value.exit_code == ExitCode.INFRASTRUCTURE == 4
    assert "vLLM" in info.value.message and "docs/vllm.md" in (info.value.hint or "")
    assert "\n" not in info.value.message


def test_invalid_options_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        _sampler(gpu_memory_utilization=1.5)
    assert "gpu_memory_utilization" in str(info.value)
    with pytest.raises(ConfigError, match="tensor_paralel_size"):
        _sampler(tensor_paralel_size=2)


def test_greedy_output_equals_the_hf_sampler(vllm_module: Any, vllm_model_dir: Path,
                                             engine_options: dict) -> None:
    from sami_toolkit import get_component

    vllm_out = _sampler(max_new_tokens=12, **engine_options).generate(str(vllm_model_dir), PROMPTS)
    hf = get_component("samplers", "hf", {"max_new_tokens": 12, "batch_size": 1, "dtype": "float32",
                                          "device": "cpu"})
    hf_out = hf.generate(str(vllm_model_dir), PROMPTS)
    assert vllm_out == hf_out
    assert any(vllm_out), "the tiny model generated nothing; the comparison would be vacuous"


def test_options_are_passed_through_exactly(fake_vllm: Any, vllm_model_dir: Path) -> None:
    sampler = _sampler(tensor_parallel_size=2, gpu_memory_utilization=0.5, enable_prefix_caching=False,
                       dtype="bfloat16", max_model_len=256, seed=7, trust_remote_code=True, enforce_eager=True,
                       swap_space=2, engine_kwargs={"max_num_seqs": 8}, max_new_tokens=5, temperature=0.7,
                       top_p=0.9, stop=["\n\n", "Human:"])
    sampler.generate(str(vllm_model_dir), PROMPTS[:2])
    llm_calls = [c for c in fake_vllm.CALLS if c[0] == "LLM"]
    assert llm_calls == [("LLM", {"model": str(vllm_model_dir), "tensor_parallel_size": 2,
                                  "gpu_memory_utilization": 0.5, "enable_prefix_caching": False,
                                  "dtype": "bfloat16", "seed": 7, "trust_remote_code": True,
                                  "max_model_len": 256, "enforce_eager": True, "swap_space": 2.0,
                                  "max_num_seqs": 8})]
    (_, _, prompts, params), = [c for c in fake_vllm.CALLS if c[0] == "generate"]
    assert prompts == PROMPTS[:2]
    assert params.kwargs == {"n": 1, "temperature": 0.7, "top_p": 0.9, "max_tokens": 5,
                             "stop": ["\n\n", "Human:"], "seed": 7}


def test_defaults_follow_the_paper(fake_vllm: Any, vllm_model_dir: Path) -> None:
    sampler = _sampler()
    kwargs = sampler.options.llm_kwargs(str(vllm_model_dir))
    assert kwargs["enable_prefix_caching"] is True and kwargs["dtype"] == "auto"
    assert "swap_space" not in kwargs and "max_model_len" not in kwargs and "enforce_eager" not in kwargs
    params = sampler.sampling_params(fake_vllm)
    assert params.kwargs == {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 350}  # greedy, spec §2.3


def test_engine_is_reused_then_replaced_and_closed(fake_vllm: Any, vllm_model_dir: Path, tmp_path: Path,
                                                   engine_options: dict) -> None:
    from sami_toolkit.testing import make_tiny_model_dir

    other = make_tiny_model_dir(tmp_path / "iteration-1", seed=1)
    sampler = _sampler(max_new_tokens=3, **engine_options)
    sampler.generate(str(vllm_model_dir), PROMPTS[:1])
    sampler.generate(str(vllm_model_dir), PROMPTS[1:2])
    assert [c[0] for c in fake_vllm.CALLS] == ["LLM", "generate", "generate"]
    first = fake_vllm.INSTANCES[0]

    sampler.generate(str(other), PROMPTS[:1])  # a new checkpoint path: old engine torn down first
    assert [c[0] for c in fake_vllm.CALLS][3:] == ["shutdown", "cleanup", "LLM", "generate"]
    assert fake_vllm.CALLS[3] == ("shutdown", id(first)) and first.is_shut_down
    assert fake_vllm.CALLS[5][1]["model"] == str(other)

    sampler.close()
    sampler.close()  # idempotent
    assert [c[0] for c in fake_vllm.CALLS][7:] == ["shutdown", "cleanup"]
    assert all(llm.is_shut_down for llm in fake_vllm.INSTANCES)
    assert sampler.engine.llm is None


def test_stop_strings_cut_the_response(vllm_module: Any, vllm_model_dir: Path, engine_options: dict) -> None:
    full = _sampler(max_new_tokens=12, **engine_options).generate(str(vllm_model_dir), PROMPTS)
    text = max(full, key=len)
    assert len(text) >= 6, "the tiny model must generate some text for this test"
    stop = text[3:6]
    cut = _sampler(max_new_tokens=12, stop=[stop], **engine_options).generate(str(vllm_model_dir), PROMPTS)
    assert cut == [t[:t.find(stop)] if stop in t else t for t in full]
    assert cut[full.index(text)] == text[:text.find(stop)]


def test_progress_is_reported_per_chunk(fake_vllm: Any, vllm_model_dir: Path, engine_options: dict) -> None:
    seen: list[int] = []
    prompts = PROMPTS + PROMPTS[:2]
    out = _sampler(max_new_tokens=2, batch_size=2, **engine_options).generate(str(vllm_model_dir), prompts,
                                                                             progress=seen.append)
    assert seen == [2, 2, 1] and len(out) == 5
    assert [len(c[2]) for c in fake_vllm.CALLS if c[0] == "generate"] == [2, 2, 1]


def test_empty_prompt_list_loads_nothing(fake_vllm: Any, vllm_model_dir: Path) -> None:
    assert _sampler().generate(str(vllm_model_dir), []) == []
    assert fake_vllm.CALLS == []


def test_engine_load_failure_is_exit_4(vllm_module: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(InfrastructureError, match="could not load model") as info:
        _sampler(**{"dtype": "float32"}).generate(str(broken), ["x"])
    assert info.value.exit_code == 4


def test_missing_model_path_is_a_config_error(vllm_module: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        _sampler().generate(str(tmp_path / "nope"), ["x"])


def test_ctrl_c_taken_by_another_thread_still_interrupts_the_main_thread() -> None:
    """While vLLM blocks the main thread in C (a ZeroMQ poll), a Ctrl-C the kernel hands to another thread never
    interrupted it: the run hung until vLLM's 10-minute start-up timeout. Here the signal lands on a helper thread
    while the main thread sleeps in C; the adapter's guard re-sends it to the main thread."""
    import signal
    import threading
    import time

    from sami_kit_vllm.engine import ctrl_c_reaches_the_main_thread

    def ctrl_c_on_this_thread() -> None:
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # delivered to this thread, not the main one

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_reaches_the_main_thread():
            threading.Thread(target=ctrl_c_on_this_thread, daemon=True).start()
            time.sleep(8)  # C-level sleep: only a signal delivered to this thread interrupts it
    assert time.monotonic() - start < 4, "the main thread was not interrupted"
    # the guard restored the previous wake-up fd (none) and stopped its watcher
    assert signal.set_wakeup_fd(-1) == -1
    assert not [t for t in threading.enumerate() if t.name == "sami-kit-vllm-sigint"]
