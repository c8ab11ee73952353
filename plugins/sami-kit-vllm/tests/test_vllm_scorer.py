"""vLLM ``prompt_logprobs`` scoring == a direct transformers computation == the core's ``score_matrix``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from conftest_paths import REAL_VLLM

ATOL = 2e-3 if REAL_VLLM else 1e-4  # GPU kernels vs CPU reference; the fake runs the same CPU model

PROMPTS = ["Summarize the post below. POST: The cat sat on the mat. Summary:",
           "Human: I have a question about my landlord. Assistant:",
           "POST: my dog and my friend. Summary:"]
RESPONSES = ["The post is about a cat.", " Write a response that is helpful.", "I have a dog."]


@pytest.fixture(scope="module")
def hf(vllm_model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(vllm_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(vllm_model_dir), dtype=torch.float32).eval()
    return model, tok


def direct(hf: tuple[Any, Any], prompt: str, response: str, *, reduction: str = "sum",
           drop_ids: tuple[int, ...] = ()) -> float:
    """log p(response | BOS + prompt) with transformers: ids of prompt and response concatenated, EOS not scored."""
    import torch

    model, tok = hf
    p = [tok.bos_token_id] + tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([p + r])).logits[0].float(), dim=-1)
    vals = [logp[len(p) + t - 1, r[t]].item() for t in range(len(r))
            if r[t] != tok.eos_token_id and r[t] not in drop_ids]
    return sum(vals) if reduction == "sum" else sum(vals) / len(vals)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_score_logprobs_equals_transformers_and_core(vllm_module: Any, vllm_model_dir: Path, hf: Any,
                                                     engine_options: dict, reduction: str) -> None:
    from sami_toolkit.training.scoring import ScoringOptions, score_matrix

    from sami_kit_vllm.engine import VLLMEngineOptions
    from sami_kit_vllm.scorer import score_logprobs

    got = score_logprobs(str(vllm_model_dir), PROMPTS, RESPONSES, reduction=reduction,
                         options=VLLMEngineOptions(**engine_options))
    want = [direct(hf, p, r, reduction=reduction) for p, r in zip(PROMPTS, RESPONSES)]
    assert got == pytest.approx(want, abs=ATOL)
    core = score_matrix(hf[0], hf[1], [[p] for p in PROMPTS], [[r] for r in RESPONSES],
                        ScoringOptions(reduction=reduction, layout="naive"))
    assert got == pytest.approx(core.flatten().tolist(), abs=ATOL)
    assert len(set(round(g, 3) for g in got)) == 3  # three different pairs, three different numbers


def test_score_matrix_equals_core_score_matrix(vllm_module: Any, vllm_model_dir: Path, hf: Any,
                                               engine_options: dict) -> None:
    import torch

    from sami_toolkit.training.scoring import ScoringOptions, score_matrix

    from sami_kit_vllm.engine import VLLMEngineOptions
    from sami_kit_vllm.scorer import score_matrix_vllm

    prompts = [[PROMPTS[0], PROMPTS[2]], [PROMPTS[1], PROMPTS[0]]]
    responses = [[RESPONSES[0], RESPONSES[2]], [RESPONSES[1], "The cat."]]
    got = score_matrix_vllm(str(vllm_model_dir), prompts, responses, options=VLLMEngineOptions(**engine_options))
    with torch.no_grad():
        want = score_matrix(hf[0], hf[1], prompts, responses, ScoringOptions(reduction="sum"))
    assert got.shape == (2, 2, 2) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    # layout: rows are constitutions (prompts), columns responses (spec §1.2)
    assert got[1, 0, 1].item() == pytest.approx(direct(hf, prompts[1][0], responses[1][1]), abs=ATOL)


def test_token_id_zero_is_scored(vllm_module: Any, vllm_model_dir: Path, hf: Any, engine_options: dict) -> None:
    """The reference code's ``labels != 0`` dropped every id-0 token (spec §1.6, §10.13); here it counts."""
    from sami_kit_vllm.engine import VLLMEngineOptions
    from sami_kit_vllm.scorer import score_logprobs

    response = "The cat<pad> sat<pad>"
    ids = hf[1](response, add_special_tokens=False)["input_ids"]
    assert ids.count(0) == 2, "precondition: the response must contain token id 0"
    got, = score_logprobs(str(vllm_model_dir), [PROMPTS[0]], [response], options=VLLMEngineOptions(**engine_options))
    with_zero = direct(hf, PROMPTS[0], response)
    without_zero = direct(hf, PROMPTS[0], response, drop_ids=(0,))
    assert abs(with_zero - without_zero) > 10 * ATOL
    assert got == pytest.approx(with_zero, abs=ATOL)


def test_eos_inside_a_response_is_context_not_score(vllm_module: Any, vllm_model_dir: Path, hf: Any,
                                                    engine_options: dict) -> None:
    from sami_toolkit.training.scoring import ScoringOptions, score_matrix

    from sami_kit_vllm.engine import VLLMEngineOptions
    from sami_kit_vllm.scorer import score_logprobs

    response = "The cat.</s> The dog."
    assert hf[1].eos_token_id in hf[1](response, add_special_tokens=False)["input_ids"]
    got, = score_logprobs(str(vllm_model_dir), [PROMPTS[0]], [response], reduction="mean",
                          options=VLLMEngineOptions(**engine_options))
    core = score_matrix(hf[0], hf[1], [[PROMPTS[0]]], [[response]], ScoringOptions(reduction="mean"))
    assert got == pytest.approx(direct(hf, PROMPTS[0], response, reduction="mean"), abs=ATOL)
    assert got == pytest.approx(core.item(), abs=ATOL)


def test_scoring_requests_are_token_ids_with_one_bos(fake_vllm: Any, vllm_model_dir: Path, hf: Any,
                                                     engine_options: dict) -> None:
    from sami_kit_vllm.engine import VLLMEngine, VLLMEngineOptions
    from sami_kit_vllm.scorer import score_logprobs

    tok = hf[1]
    engine = VLLMEngine(VLLMEngineOptions(**engine_options))
    engine.get(str(vllm_model_dir))
    score_logprobs(engine, [tok.bos_token + PROMPTS[0], PROMPTS[1]], RESPONSES[:2])
    (_, _, requests, params), = [c for c in fake_vllm.CALLS if c[0] == "generate"]
    assert params.kwargs == {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0, "detokenize": False}
    for request, response in zip(requests, RESPONSES):
        ids = request["prompt_token_ids"]
        assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id  # exactly one BOS, even if the text had one
        r = tok(response, add_special_tokens=False)["input_ids"]
        assert ids[-len(r):] == r  # response ids appended as tokenised on their own (spec §10.12)
    assert engine.llm is not None and not fake_vllm.INSTANCES[0].is_shut_down  # a given engine stays open
    score_logprobs(str(vllm_model_dir), PROMPTS[:1], RESPONSES[:1], options=VLLMEngineOptions(**engine_options))
    assert fake_vllm.INSTANCES[1].is_shut_down  # an engine the scorer built is closed
    engine.close()


def test_bad_input_is_rejected_before_loading(fake_vllm: Any, vllm_model_dir: Path) -> None:
    from sami_kit_vllm.scorer import score_logprobs

    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        score_logprobs(str(vllm_model_dir), PROMPTS[:2], RESPONSES[:1])
    with pytest.raises(ValueError, match="not one string"):
        score_logprobs(str(vllm_model_dir), "a prompt", "a response")
    with pytest.raises(ValueError, match="reduction"):
        score_logprobs(str(vllm_model_dir), PROMPTS[:1], RESPONSES[:1], reduction="max")  # type: ignore[arg-type]
    assert score_logprobs(str(vllm_model_dir), [], []) == []
    assert fake_vllm.CALLS == []


def test_mi_summary_matches_the_formulas() -> None:
    import torch

    from sami_toolkit.evaluation.mi import mi_summary

    scores = torch.tensor([[[-10.0, -14.0, -9.0], [-12.0, -11.0, -13.0], [-15.0, -16.0, -8.0]],
                           [[-5.0, -6.0, -7.0], [-6.5, -4.0, -9.0], [-8.0, -7.5, -3.0]]])
    C = 3

    def paper(s: Any) -> float:  # (1/C) Σ_j [S_jj − (1/C) Σ_k S_kj]   (spec §1.6)
        return sum(s[j][j] - sum(s[k][j] for k in range(C)) / C for j in range(C)) / C

    def col_bound(s: Any) -> float:  # log C − L_col
        return math.log(C) + sum(s[j][j] - math.log(sum(math.exp(s[k][j]) for k in range(C))) for j in range(C)) / C

    rows = scores.tolist()
    got = mi_summary(scores)
    for key, fn in (("mi_paper", paper), ("mi_infonce_constitutions", col_bound)):
        values = [fn(s) for s in rows]
        mean = sum(values) / 2
        sem = math.sqrt(sum((v - mean) ** 2 for v in values) / 1) / math.sqrt(2)
        assert got[key] == pytest.approx(mean, abs=1e-5) and got[f"{key}_sem"] == pytest.approx(sem, abs=1e-5)
    assert got["mi_infonce_constitutions"] <= math.log(C)
    assert {"mi_infonce", "mi_infonce_sem", "mi_infonce_responses", "mi_infonce_responses_sem"} <= set(got)


def test_too_long_sequences_are_a_config_error(vllm_module: Any, vllm_model_dir: Path, engine_options: dict) -> None:
    """A sequence longer than the engine's max_model_len is the user's setting (exit 2), with vLLM's numbers: the fake
    raises ValueError, real vLLM 0.32 a VLLMValidationError (not a ValueError). The engine keeps serving."""
    from sami_toolkit.core.errors import ConfigError

    from sami_kit_vllm.engine import VLLMEngine, VLLMEngineOptions
    from sami_kit_vllm.scorer import score_logprobs

    limit = engine_options["max_model_len"]
    engine = VLLMEngine(VLLMEngineOptions(**engine_options))
    engine.get(str(vllm_model_dir))
    long_prompt = " ".join([PROMPTS[0]] * 40)
    n_tokens = 1 + len(engine.tokenizer()(long_prompt, add_special_tokens=False)["input_ids"])
    assert n_tokens > limit, "precondition: the prompt must not fit"
    with pytest.raises(ConfigError, match="vLLM rejected a request") as info:
        score_logprobs(engine, [long_prompt], [RESPONSES[0]])
    assert info.value.exit_code == 2
    assert str(limit) in info.value.message  # vLLM's own numbers: the limit ...
    assert any(str(n) in info.value.message for n in range(n_tokens, n_tokens + 30))  # ... and the request's length
    assert "max_length" in (info.value.hint or "") and f"max_model_len (now {limit})" in (info.value.hint or "")
    assert "\n" not in info.value.message
    # the engine survived the rejected request; truncating the prompt from the left (after the BOS) makes it fit,
    # as in the core's score_matrix
    got, = score_logprobs(engine, [long_prompt], [RESPONSES[0]], max_length=limit - 20)
    assert math.isfinite(got) and got < 0
    engine.close()
