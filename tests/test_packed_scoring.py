"""The packed (shared-prompt) layout gives the naive layout's scores and gradients, and the tests can fail: each
known silent bug of packing (see /work/shared/notes/packed-scoring.md) is built with ``_debug`` and must be caught."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from sami_toolkit.training.losses import sami_loss
from sami_toolkit.models.loading import enable_activation_checkpointing
from sami_toolkit.training.scoring import ScoringOptions, score_matrix
from sami_toolkit.testing import make_tiny_model_dir

# C = 4 constitutions, two queries with prompts and responses of different lengths (exercises padding)
PROMPTS = [
    ["Summarize the post below. Summaries should be brief. POST: The cat sat on the mat. Summary:",
     "Summarize the post below. Summaries should be thorough. POST: The cat sat on the mat. Summary:",
     "Summaries should not be brief. POST: The cat sat on the mat. Summary:",
     "POST: The cat sat on the mat. Summary:"],
    ["Human: I have a question about my landlord and my dog. Assistant:",
     "Write a response for the assistant that follows the principles. helpful harmless Human: my job? Assistant:",
     "helpful Human: my friend? Assistant:",
     "harmless concise Human: I have a question about my job, my friend and my dog. Assistant:"],
]
RESPONSES = [
    ["The post is about a cat.", "A cat sat on the mat and the dog sat too.", "Cat.", "The post: my landlord"],
    ["helpful harmless", "I have a question about my landlord, my job, my friend", "The dog.", "1. 2. 3."],
]
ARCHS = ["llama", "mistral", "qwen2"]


def _sharpen(model: Any, std: float = 0.3, seed: int = 0) -> Any:
    """Larger random weights: context and positions then move scores by many nats, so bugs cannot hide."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


@pytest.fixture(scope="module")
def arch_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dirs = {"llama": tiny_model_dir}
    for arch in ("mistral", "qwen2"):
        dirs[arch] = make_tiny_model_dir(tmp_path_factory.mktemp(f"tiny-{arch}"), arch=arch)  # type: ignore[arg-type]
    return dirs


@pytest.fixture(scope="module")
def llama_cache(arch_dirs: dict[str, Path]) -> dict[str, Any]:
    """Per attention backend: the sharpened tiny llama, its tokenizer and its naive sum scores (computed once)."""
    cache: dict[str, Any] = {}
    for attn in ("sdpa", "eager"):
        model, tok = _load(arch_dirs["llama"], attn)
        with torch.no_grad():
            naive = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(reduction="sum", layout="naive"))
        cache[attn] = (model, tok, naive)
    return cache


def _load(path: Path, attn: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn, dtype=torch.float32)
    return _sharpen(model), AutoTokenizer.from_pretrained(path)


def _assert_layouts_agree(naive: torch.Tensor, packed: torch.Tensor) -> None:
    """1e-6 relative or 1e-3 absolute on summed response log-probs (fp32)."""
    diff = (naive - packed).abs()
    ok = (diff <= 1e-3) | (diff <= 1e-6 * naive.abs())
    assert bool(ok.all()), f"max |naive - packed| = {diff.max().item():.3g}"


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ARCHS)
def test_packed_matches_naive(arch_dirs: dict[str, Path], arch: str, attn: str) -> None:
    model, tok = _load(arch_dirs[arch], attn)
    assert model.config._attn_implementation == attn
    sums = ScoringOptions(reduction="sum")
    with torch.no_grad():
        naive = score_matrix(model, tok, PROMPTS, RESPONSES, sums.model_copy(update={"layout": "naive"}))
        packed = score_matrix(model, tok, PROMPTS, RESPONSES, sums.model_copy(update={"layout": "packed"}),
                              return_logits=True)
    assert packed.layout == "packed" and naive.shape == (2, 4, 4)
    _assert_layouts_agree(naive, packed.scores)
    # scores really depend on the constitution (rows differ), so agreement is not trivial
    assert (naive[:, 0] - naive[:, 1]).abs().max() > 1.0


@pytest.mark.parametrize("attn, debug", [
    ("eager", "bool_mask"),  # eager adds a bool mask as 0/1: no masking at all
    ("sdpa", "one_zero_mask"),
    ("eager", "one_zero_mask"),
    ("sdpa", "no_position_ids"),
    ("eager", "no_position_ids"),
    ("sdpa", "no_position_restart"),
    ("eager", "no_position_restart"),
])
def test_known_packing_bugs_are_caught(llama_cache: dict[str, Any], attn: str, debug: str) -> None:
    model, tok, naive = llama_cache[attn]
    with torch.no_grad():
        buggy = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(reduction="sum"), _debug=debug)
    # the correct packed layout agrees on the same model (test_packed_matches_naive), the buggy one must not
    assert (naive - buggy).abs().max().item() > 1.0, f"{debug} with {attn} was not detected"


def test_bool_mask_happens_to_work_with_sdpa_only(llama_cache: dict[str, Any]) -> None:
    """Documents why a backend-specific test is needed: sdpa reads a bool mask as keep/drop, eager does not."""
    model, tok, naive = llama_cache["sdpa"]
    with torch.no_grad():
        buggy = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(reduction="sum"), _debug="bool_mask")
    _assert_layouts_agree(naive, buggy)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_parameter_gradients_match_between_layouts(llama_cache: dict[str, Any], attn: str) -> None:
    model, tok, _ = llama_cache[attn]
    grads = {}
    for layout in ("naive", "packed"):
        model.zero_grad(set_to_none=True)
        loss = sami_loss(score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(layout=layout)))
        loss.backward()
        grads[layout] = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    assert grads["naive"].keys() == grads["packed"].keys() and len(grads["naive"]) > 5
    for name, g in grads["naive"].items():
        scale = g.abs().max().item()
        assert scale > 0, name
        assert (grads["packed"][name] - g).abs().max().item() <= 1e-4 * scale + 1e-7, name


def _spy_on_sdpa(monkeypatch: pytest.MonkeyPatch, calls: list[dict[str, Any]], fail: bool = False) -> None:
    """Record (or fail) every call of transformers' sdpa attention function."""
    import transformers.integrations.sdpa_attention as sdpa
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    real = sdpa.sdpa_attention_forward

    def spy(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any,
            **kwargs: Any) -> Any:
        if fail:
            raise RuntimeError("attention failed")
        calls.append({"queries": query.shape[2], "keys": key.shape[2], "mask": mask is not None,
                      "is_causal": kwargs.get("is_causal")})
        return real(module, query, key, value, mask, **kwargs)

    monkeypatch.setattr(sdpa, "sdpa_attention_forward", spy)  # what the split attention calls
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS, "sdpa", spy)  # what the model calls for attn_implementation=sdpa


def test_sdpa_runs_the_shared_prompt_prefix_as_plain_causal_attention(llama_cache: dict[str, Any],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Packed + sdpa: the first (shortest-prompt) positions run unmasked with is_causal, the rest with the mask;
    the model's attention setting is restored, and the numbers are the naive ones (test_packed_matches_naive)."""
    from sami_toolkit.training.scoring import ScoringOptions as Options
    from sami_toolkit.training.scoring import encode

    model, tok, naive = llama_cache["sdpa"]
    enc = encode(tok, PROMPTS, RESPONSES, Options())
    prefix = min(len(p) for row in enc.prompts for p in row)
    width = max(len(p) + sum(len(r) for r in enc.responses[b]) for b in range(enc.batch) for p in enc.prompts[b])
    calls: list[dict[str, Any]] = []
    _spy_on_sdpa(monkeypatch, calls)
    with torch.no_grad():
        packed = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(reduction="sum", layout="packed"))
    _assert_layouts_agree(naive, packed)
    layers = model.config.num_hidden_layers
    assert calls == [{"queries": prefix, "keys": prefix, "mask": False, "is_causal": True},
                     {"queries": width - prefix, "keys": width, "mask": True, "is_causal": False}] * layers
    assert model.config._attn_implementation == "sdpa"


def test_attention_setting_is_restored_when_the_forward_fails(llama_cache: dict[str, Any],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok, _ = llama_cache["sdpa"]
    _spy_on_sdpa(monkeypatch, [], fail=True)
    with pytest.raises(RuntimeError, match="attention failed"), torch.no_grad():
        score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(layout="packed"))
    assert model.config._attn_implementation == "sdpa"


def test_gradients_match_with_gradient_checkpointing(arch_dirs: dict[str, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpointed layers recompute their forward in the backward pass, when the split attention is switched off
    again (torch refuses a recompute that saves other tensors), so packed scoring uses the full mask there."""
    model, tok = _load(arch_dirs["llama"], "sdpa")
    model.train()
    grads = {}
    calls: list[dict[str, Any]] = []
    _spy_on_sdpa(monkeypatch, calls)
    for layout, checkpointing in (("naive", False), ("packed", True)):
        if checkpointing:
            enable_activation_checkpointing(model)
        model.zero_grad(set_to_none=True)
        calls.clear()
        sami_loss(score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(layout=layout))).backward()
        if checkpointing:  # forward + recompute, every call with the full mask
            assert len(calls) == 2 * model.config.num_hidden_layers and all(c["mask"] for c in calls)
        grads[layout] = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    assert len(grads["packed"]) == len(grads["naive"]) > 5
    for name, g in grads["naive"].items():
        assert (grads["packed"][name] - g).abs().max().item() <= 1e-4 * g.abs().max().item() + 1e-7, name


#: bf16 autocast tolerance between layouts on the tiny model, nats per response mean log-prob.  The layouts sum
#: the same terms in a different order (and pad differently), so they agree only up to bf16 rounding.
BF16_LAYOUT_TOLERANCE = 0.05


def test_bf16_autocast_layouts_agree_within_tolerance(llama_cache: dict[str, Any]) -> None:
    model, tok, _ = llama_cache["sdpa"]
    with torch.no_grad():
        fp32 = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(layout="naive"))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            naive = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(layout="naive"))
            packed = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(layout="packed"))
    assert packed.dtype == torch.float32
    assert (naive - packed).abs().max().item() < BF16_LAYOUT_TOLERANCE
    assert (fp32 - packed).abs().max().item() < 2 * BF16_LAYOUT_TOLERANCE


def test_sliding_window_shorter_than_sequence_falls_back_to_naive(arch_dirs: dict[str, Path],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A custom 4D mask would bypass Mistral's sliding window: auto must use naive and say so once."""
    model, tok = _load(arch_dirs["mistral"], "sdpa")
    model.config.sliding_window = 8
    caplog.set_level(logging.WARNING, logger="sami_toolkit.training.scoring")
    with torch.no_grad():
        auto = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(reduction="sum"), return_logits=True)
        naive = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(reduction="sum", layout="naive"))
        packed = score_matrix(model, tok, PROMPTS, RESPONSES, ScoringOptions(reduction="sum"), _debug="force")
    assert auto.layout == "naive"
    torch.testing.assert_close(auto.scores, naive)
    assert (packed - naive).abs().max().item() > 1.0  # the window really matters here
    assert any("sliding window" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_smollm2_packed_matches_naive(smollm2_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    prompts = [["Summarize in one line, be brief. POST: My cat sat on my laptop. Summary:",
                "Summarize in one line, be thorough. POST: My cat sat on my laptop. Summary:"]]
    responses = [[" The cat sat on a laptop.", " A cat sat on the owner's laptop while they were working."]]
    sums = ScoringOptions(reduction="sum")
    with torch.no_grad():
        naive = score_matrix(model, tok, prompts, responses, sums.model_copy(update={"layout": "naive"}))
        packed = score_matrix(model, tok, prompts, responses, sums.model_copy(update={"layout": "packed"}))
        _assert_layouts_agree(naive, packed)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            packed_bf16 = score_matrix(model, tok, prompts, responses, sums.model_copy(update={"layout": "packed"}))
    # bf16 rounding, not the layout: ~0.4–1.2 nats on sums of 30–60 tokens were measured; allow 2 nats
    assert (packed_bf16 - naive).abs().max().item() < 2.0
