"""score_matrix on a tiny random-weight model: tokenisation, masking (spec §1.4), padding, options, errors."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.training.scoring import (
    ScoreOutput,
    ScoringOptions,
    choose_layout,
    packed_unsupported_reason,
    score_matrix,
    score_token_ids,
)

PROMPTS = [
    ["Summarize the post below. The cat sat on the mat. Summary:", "Summaries should be brief. The cat sat. Summary:"],
    ["Human: I have a question about my dog. Assistant:", "Human: my landlord and my job? Assistant:"],
]
RESPONSES = [
    ["The post is about a cat.", "A cat sat on the mat and the dog"],
    ["helpful harmless", "I have a question about my landlord, my job, my friend"],
]


def sharpen(model: Any, std: float = 0.3, seed: int = 0) -> Any:
    """Re-draw every weight matrix with a larger std so that context and positions change the scores a lot
    (the default 0.02 init gives near-uniform predictions that hide masking bugs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def load_tiny(path: Path, attn: str = "sdpa") -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn, dtype=torch.float32)
    return sharpen(model), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[Any, Any]:
    return load_tiny(tiny_model_dir)


def reference_logprob(model: Any, tokenizer: Any, prompt: str, response: str, *, add_bos: bool = True,
                      reduction: str = "sum") -> float:
    """Independent hand computation: one unpadded sequence, full log_softmax, sum over response tokens that are
    not EOS."""
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if add_bos:
        p_ids = [tokenizer.bos_token_id] + p_ids
    ids = torch.tensor([p_ids + r_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    total, n = 0.0, 0
    for t, tok in enumerate(r_ids):
        if tok == tokenizer.eos_token_id:
            continue
        total += logp[len(p_ids) + t - 1, tok].item()
        n += 1
    return total if reduction == "sum" else total / n


@pytest.fixture(scope="module")
def reference_matrix(tiny: tuple[Any, Any]) -> dict[str, torch.Tensor]:
    model, tok = tiny
    out = {red: torch.zeros(2, 2, 2, dtype=torch.float64) for red in ("sum", "mean")}
    for b in range(2):
        for k in range(2):
            for j in range(2):
                for red in out:
                    out[red][b, k, j] = reference_logprob(model, tok, PROMPTS[b][k], RESPONSES[b][j], reduction=red)
    return out


@pytest.mark.parametrize("layout", ["naive", "packed"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_scores_match_hand_computation(tiny: tuple[Any, Any], reference_matrix: dict[str, torch.Tensor],
                                       layout: str, reduction: str) -> None:
    model, tok = tiny
    with torch.no_grad():
        s = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(layout=layout, reduction=reduction))
    assert isinstance(s, torch.Tensor) and s.shape == (2, 2, 2) and s.dtype == torch.float32
    torch.testing.assert_close(s.double(), reference_matrix[reduction], rtol=1e-5, atol=1e-4)


def test_scores_are_differentiable(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    s = score_matrix(model, tok, PROMPTS, RESPONSES)
    assert s.requires_grad
    s.sum().backward()
    emb = model.get_input_embeddings().weight
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_padding_does_not_change_scores(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    long_prompts = [["Human: " + "I have a question about my landlord, my job, my friend and my dog. " * 4
                     + "Assistant:"] * 2]
    long_responses = [["The cat sat on the mat. " * 5, "helpful"]]
    for layout in ("naive", "packed"):
        opts = ScoringOptions(layout=layout, reduction="sum")
        with torch.no_grad():
            alone = score_matrix(model, tok, PROMPTS[:1], RESPONSES[:1], opts)
            batched = score_matrix(model, tok, PROMPTS[:1] + long_prompts, RESPONSES[:1] + long_responses, opts)
        torch.testing.assert_close(batched[0], alone[0], rtol=1e-5, atol=1e-5)


def test_response_change_moves_only_its_column(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    opts = ScoringOptions(reduction="sum")
    with torch.no_grad():
        base = score_matrix(model, tok, PROMPTS[:1], RESPONSES[:1], opts)[0]
        changed = score_matrix(model, tok, PROMPTS[:1], [[RESPONSES[0][0], "The dog sat on my friend"]], opts)[0]
    torch.testing.assert_close(changed[:, 0], base[:, 0], rtol=1e-6, atol=1e-5)  # column 0 untouched
    assert torch.all((changed[:, 1] - base[:, 1]).abs() > 1e-2)  # column 1 moved in every row


def test_prompt_change_moves_only_its_row(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    opts = ScoringOptions(reduction="sum")
    with torch.no_grad():
        base = score_matrix(model, tok, PROMPTS[:1], RESPONSES[:1], opts)[0]
        changed = score_matrix(model, tok, [[PROMPTS[0][0], "Summaries should be thorough. Summary:"]],
                               RESPONSES[:1], opts)[0]
    torch.testing.assert_close(changed[0], base[0], rtol=1e-6, atol=1e-5)
    assert torch.all((changed[1] - base[1]).abs() > 1e-2)


def test_prompt_tokens_are_not_scored(tiny: tuple[Any, Any]) -> None:
    """Only the response's own tokens are counted: not the prompt, not the BOS (hand computation of the values is
    in test_scores_match_hand_computation)."""
    model, tok = tiny
    opts = ScoringOptions(reduction="sum")
    prompt, response = "Summarize the post below. Summary:", " The cat sat on the mat."
    with torch.no_grad():
        out = score_matrix(model, tok, [[prompt, prompt]], [[response, response]], opts, return_logits=True)
    n_resp = len(tok(response, add_special_tokens=False)["input_ids"])
    assert out.token_counts.tolist() == [[n_resp, n_resp]]


def test_eos_in_response_is_not_scored(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    for reduction in ("sum", "mean"):
        opts = ScoringOptions(reduction=reduction)
        with torch.no_grad():
            plain = score_matrix(model, tok, PROMPTS[:1], RESPONSES[:1], opts)
            with_eos = score_matrix(model, tok, PROMPTS[:1], [[r + tok.eos_token for r in RESPONSES[0]]], opts)
        torch.testing.assert_close(with_eos, plain, rtol=1e-6, atol=1e-5)


def test_add_bos(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    with torch.no_grad():
        s = score_matrix(model, tok, PROMPTS[:1], RESPONSES[:1], ScoringOptions(add_bos=False, reduction="sum"))
        with_bos = score_matrix(model, tok, PROMPTS[:1], RESPONSES[:1], ScoringOptions(reduction="sum"))
        # a prompt that already starts with the BOS text gets no second BOS
        doubled = score_matrix(model, tok, [[tok.bos_token + p for p in PROMPTS[0]]], RESPONSES[:1],
                               ScoringOptions(reduction="sum"))
    ref = reference_logprob(model, tok, PROMPTS[0][0], RESPONSES[0][1], add_bos=False)
    assert s[0, 0, 1].item() == pytest.approx(ref, rel=1e-5, abs=1e-4)
    assert (s - with_bos).abs().max() > 1e-2
    torch.testing.assert_close(doubled, with_bos, rtol=1e-6, atol=1e-5)


def test_max_length_truncates_prompt_from_the_left(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    prompt = "I have a question about my landlord, my job, my friend and my dog. Summary:"
    response = " The cat sat."
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tok(response, add_special_tokens=False)["input_ids"]
    keep = 5
    opts = ScoringOptions(max_length=1 + keep + len(r_ids), reduction="sum")
    with torch.no_grad():
        s = score_matrix(model, tok, [[prompt, prompt]], [[response, response]], opts)
        ids = torch.tensor([[tok.bos_token_id] + p_ids[-keep:] + r_ids])
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    ref = sum(logp[1 + keep + t - 1, r].item() for t, r in enumerate(r_ids))
    assert s[0, 0, 0].item() == pytest.approx(ref, rel=1e-5, abs=1e-4)
    with pytest.raises(ValueError, match="max_length"):
        score_matrix(model, tok, [[prompt, prompt]], [[response, response]], ScoringOptions(max_length=len(r_ids)))


@pytest.mark.parametrize("prompts, responses, message", [
    ([["a", "b"]], [["x", ""]], "response 1 of query 0 is empty"),
    ([["a", "b"]], [["x", "</s>"]], "no token to score"),
    ([["a", "b"], ["a"]], [["x", "y"], ["x"]], "query 1 has 1 prompts"),
    ([["a", "b"]], [["x", "y"], ["x", "y"]], "1 prompt lists but 2"),
    ([], [], "empty batch"),
    (["ab"], [["x", "y"]], "single string"),
])
def test_malformed_input_raises_value_error(tiny: tuple[Any, Any], prompts: Any, responses: Any,
                                            message: str) -> None:
    model, tok = tiny
    with pytest.raises(ValueError, match=message):
        score_matrix(model, tok, prompts, responses)


def test_options_reject_unknown_keys() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ScoringOptions.model_validate({"layuot": "packed"})
    assert all(f.description for f in ScoringOptions.model_fields.values())


def test_return_logits_align_between_layouts_and_give_zero_self_kl(tiny: tuple[Any, Any]) -> None:
    from sami_toolkit.training.losses import kl_response_tokens

    model, tok = tiny
    with torch.no_grad():
        naive = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(layout="naive"), return_logits=True)
        packed = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(layout="packed"), return_logits=True)
    assert isinstance(naive, ScoreOutput) and naive.layout == "naive" and packed.layout == "packed"
    assert naive.logits.shape[:4] == naive.mask.shape and naive.logits.shape[-1] == model.config.vocab_size
    assert torch.equal(naive.mask, packed.mask)
    torch.testing.assert_close(packed.logits, naive.logits, rtol=1e-4, atol=1e-4)
    assert kl_response_tokens(packed.logits, naive.logits, packed.mask).item() == pytest.approx(0.0, abs=1e-6)
    # a different (reference) model gives a positive KL on the same aligned positions
    ref_model = sharpen(type(model)(model.config), seed=1)
    with torch.no_grad():
        ref = score_matrix(ref_model, tok, PROMPTS, RESPONSES, return_logits=True)
    assert kl_response_tokens(packed.logits, ref.logits, packed.mask).item() > 0.1
    # the scores are the selective log-softmax of exactly these logits
    logp = torch.log_softmax(naive.logits.double(), dim=-1)
    b, k, j = 1, 0, 1
    n = int(naive.token_counts[b, j])
    r_ids = tok(RESPONSES[b][j], add_special_tokens=False)["input_ids"]
    manual = sum(logp[b, k, j, t, r_ids[t]].item() for t in range(n)) / n
    assert naive.scores[b, k, j].item() == pytest.approx(manual, rel=1e-5)


def test_score_token_ids_matches_score_matrix(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    bos = tok.bos_token_id
    p_ids = [[[bos] + tok(p, add_special_tokens=False)["input_ids"] for p in ps] for ps in PROMPTS]
    r_ids = [[tok(r, add_special_tokens=False)["input_ids"] for r in rs] for rs in RESPONSES]
    with torch.no_grad():
        a = score_matrix(model, tok, PROMPTS, RESPONSES)
        b = score_token_ids(model, p_ids, r_ids, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="no token to score"):
        score_token_ids(model, p_ids, [[r_ids[0][0], []], r_ids[1]])


def _fake_model(model_type: str, attn: str, sliding_window: int | None = None) -> Any:
    config = SimpleNamespace(model_type=model_type, _attn_implementation=attn, sliding_window=sliding_window)
    return SimpleNamespace(config=config)


def test_layout_choice_allow_list(caplog: pytest.LogCaptureFixture) -> None:
    assert packed_unsupported_reason(_fake_model("llama", "sdpa")) is None
    assert packed_unsupported_reason(_fake_model("qwen2", "eager")) is None
    assert "flash_attention_2" in packed_unsupported_reason(_fake_model("llama", "flash_attention_2"))
    assert "gpt2" in packed_unsupported_reason(_fake_model("gpt2", "sdpa"))
    assert "sliding window" in packed_unsupported_reason(_fake_model("mistral", "sdpa", 16), longest_sequence=40)
    assert packed_unsupported_reason(_fake_model("mistral", "sdpa", 4096), longest_sequence=40) is None
    assert choose_layout(_fake_model("gpt2", "sdpa"), ScoringOptions(layout="naive")) == "naive"
    with pytest.raises(ConfigError, match="flash_attention_2"):
        choose_layout(_fake_model("llama", "flash_attention_2"), ScoringOptions(layout="packed"))
    caplog.set_level(logging.WARNING, logger="sami_toolkit.training.scoring")
    odd = _fake_model("llama", "some_custom_kernel")
    assert choose_layout(odd, ScoringOptions()) == "naive"
    assert choose_layout(odd, ScoringOptions()) == "naive"
    lines = [r for r in caplog.records if r.name == "sami_toolkit.training.scoring"]
    assert len(lines) == 1 and "some_custom_kernel" in lines[0].getMessage()


def test_unknown_architecture_falls_back_to_naive(tmp_path: Path, tiny: tuple[Any, Any],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A GPT-2 model is not on the packed allow-list: auto must use naive (and still be right)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tok = tiny
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=256,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = sharpen(GPT2LMHeadModel(config).eval())
    caplog.set_level(logging.WARNING, logger="sami_toolkit.training.scoring")
    with torch.no_grad():
        out = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(reduction="sum"), return_logits=True)
    assert out.layout == "naive"
    ref = reference_logprob(model, tok, PROMPTS[1][0], RESPONSES[1][1])
    assert out.scores[1, 0, 1].item() == pytest.approx(ref, rel=1e-5, abs=1e-4)


@pytest.mark.slow  # importing peft takes several seconds
def test_lora_wrapped_model_scores_and_trains_adapters(tiny_model_dir: Path) -> None:
    """Trainers may wrap the model with peft LoRA: both layouts must see through the wrapper."""
    peft = pytest.importorskip("peft")
    model, tok = load_tiny(tiny_model_dir)
    config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    lora = peft.get_peft_model(model, config)
    for layout in ("naive", "packed"):
        lora.zero_grad(set_to_none=True)
        s = score_matrix(lora, tok, PROMPTS, RESPONSES, ScoringOptions(layout=layout, reduction="sum"))
        s.sum().backward()
        lora_grads = [p.grad for n, p in lora.named_parameters() if "lora_" in n]
        assert lora_grads and all(g is not None and g.abs().sum() > 0 for g in lora_grads)
        if layout == "naive":
            naive = s.detach()
        else:
            torch.testing.assert_close(s.detach(), naive, rtol=1e-5, atol=1e-3)
    with torch.no_grad(), lora.disable_adapter():
        base = score_matrix(lora, tok, PROMPTS, RESPONSES, ScoringOptions(reduction="sum"))
    assert (base - naive).abs().max() > 1e-3  # the adapter is really in the forward path


def test_light_modules_do_not_import_torch() -> None:
    """ScoringOptions and the loss components are used at CLI start-up / config validation: no torch there."""
    import subprocess
    import sys

    code = ("import sys, sami_toolkit.training.scoring, sami_toolkit.builtin.loss_components, sami_toolkit.builtin.losses; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_selective_log_probs_match_log_softmax_with_gradients(dtype: torch.dtype) -> None:
    """The fused gather − logsumexp gives log_softmax(x)[t] and its gradient (onehot − softmax) · g."""
    from sami_toolkit.training.scoring.log_softmax import selective_log_probs

    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(7, 50, generator=gen, dtype=torch.float64) * 4).to(dtype).requires_grad_()
    targets = torch.tensor([0, 3, 49, 3, 7, 7, 20])
    weights = torch.randn(7, generator=gen, dtype=torch.float64)
    ours = selective_log_probs(logits, targets)
    (ours.double() * weights).sum().backward()
    assert ours.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    reference_logits = logits.detach().double().requires_grad_()
    reference = torch.log_softmax(reference_logits, -1).gather(-1, targets[:, None]).squeeze(-1)
    (reference * weights).sum().backward()
    assert logits.grad is not None and logits.grad.dtype == dtype
    tolerance = 1e-6 if dtype != torch.bfloat16 else 2e-2
    torch.testing.assert_close(ours.double(), reference.detach(), atol=tolerance * 10, rtol=0)
    torch.testing.assert_close(logits.grad.double(), reference_logits.grad, atol=tolerance, rtol=tolerance)
    if dtype == torch.float64:
        assert torch.autograd.gradcheck(lambda x: selective_log_probs(x, targets), (logits.detach().requires_grad_(),))
