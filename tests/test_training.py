"""The core SAMI training step (sami_toolkit.training): pairs, data order, accumulation, KL, optimizers,
schedules, clipping, precision and checkpoints — on a tiny random model, fp32 unless the test is about precision."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.models.loading import enable_activation_checkpointing
from sami_toolkit.training.checkpoint import save_checkpoint
from sami_toolkit.training.optim import apply_update, build_optimizer, build_scheduler, lr_multiplier
from sami_toolkit.training.pairs import load_pairs, training_batches
from sami_toolkit.training.settings import TrainSettings
from sami_toolkit.training.step import sami_step

WORDS = ["cat", "mat", "landlord", "job", "friend", "dog", "question", "post"]


def make_record(i: int, c: int = 2) -> dict:
    """A pairs.jsonl record (the loop's format) whose text the tiny tokenizer knows."""
    w = WORDS[i % len(WORDS)]
    kinds = ["brief and to the point", "thorough and include all important information", "helpful", "harmless"]
    return {
        "query_id": f"q{i}",
        "query": f"POST: I have a question about my {w}.",
        "constitutions": [f"1. Summaries should be {kinds[k]}." for k in range(c)],
        "labels": [f"c{k}" for k in range(c)],
        "train_prompts": [f"1. Summaries should be {kinds[k]}.\nPOST: I have a question about my {w}. Summary:"
                          for k in range(c)],
        "responses": [("The post is about my " + " and my ".join(WORDS[(i + k) % 8: (i + k) % 8 + k + 1]) + ".")
                      for k in range(c)],
        "iteration": 1,
    }


def write_pairs(path: Path, n: int, c: int = 2) -> Path:
    path.write_text("".join(json.dumps(make_record(i, c)) + "\n" for i in range(n)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    from sami_toolkit.models.loading import load_model, load_tokenizer

    return load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


def _loss_fn():
    from sami_toolkit.builtin.loss_components import SamiLoss

    return SamiLoss()  # the registered "sami" loss, without building the whole plugin registry


def _grads(model, batch, settings, **kwargs):
    model.zero_grad(set_to_none=True)
    metrics = sami_step(model, model._tok, batch, settings, loss_fn=_loss_fn(), **kwargs)
    return metrics, {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture
def model(tiny):
    m, tok = tiny
    m = copy.deepcopy(m)
    m._tok = tok
    return m


# ------------------------------------------------------------------------------------------------ load_pairs
def test_load_pairs_reads_records(tmp_path):
    records = load_pairs(write_pairs(tmp_path / "pairs.jsonl", 3, c=3))
    assert [r["query_id"] for r in records] == ["q0", "q1", "q2"]
    assert all(len(r["responses"]) == 3 for r in records)


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: r.pop("responses"), "missing field(s) responses"),
    (lambda r: r.update(responses=r["responses"][:1]), "2 constitutions but 1 responses"),
    (lambda r: r.update(constitutions=["only"], labels=["a"], train_prompts=["p"], responses=["r"]),
     "has 1 constitution(s)"),
    (lambda r: r.update(iteration="one"), "field 'iteration' must be a int"),
    (lambda r: r.update(responses=["a", 3]), "responses[1] must be a string"),
])
def test_load_pairs_errors_name_file_and_line(tmp_path, mutate, expected):
    path = tmp_path / "pairs.jsonl"
    good, bad = make_record(0), make_record(1)
    mutate(bad)
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_pairs(path)
    assert f"{path}:3:" in str(info.value)
    assert expected in str(info.value)


def test_load_pairs_bad_json_and_missing_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"query_id": \n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"pairs.jsonl:1: invalid JSON"):
        load_pairs(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_pairs(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no records"):
        load_pairs(tmp_path / "empty.jsonl")


# ----------------------------------------------------------------------------------------------- data order
def test_training_batches_shuffle_with_seed_and_take_the_first():
    pairs = [make_record(i) for i in range(10)]
    batches = training_batches(pairs, steps=2, batch_size=3, seed=7)
    ids = [r["query_id"] for b in batches for r in b]
    assert [len(b) for b in batches] == [3, 3]
    assert len(set(ids)) == 6
    import random

    expected = list(pairs)
    random.Random(7).shuffle(expected)
    assert ids == [r["query_id"] for r in expected[:6]]
    other = [r["query_id"] for b in training_batches(pairs, steps=2, batch_size=3, seed=8) for r in b]
    assert other != ids


def test_training_batches_fewer_than_one_batch_is_an_error():
    with pytest.raises(ConfigError) as info:
        training_batches([make_record(i) for i in range(3)], steps=2, batch_size=4, seed=0, source="p.jsonl")
    assert "3 pair(s)" in str(info.value) and "batch_size=4" in str(info.value)


def test_training_batches_cycle_with_a_warning(caplog):
    pairs = [make_record(i) for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="sami_toolkit.training.pairs"):
        batches = training_batches(pairs, steps=3, batch_size=4, seed=1)
    assert "cycling" in caplog.text and "5 pairs" in caplog.text
    ids = [r["query_id"] for b in batches for r in b]
    assert len(ids) == 12 and ids[5:10] == ids[:5]  # the shuffled order, repeated
    assert sorted(set(ids)) == sorted(r["query_id"] for r in pairs)


# ---------------------------------------------------------------------------------------- the SAMI step
def test_accumulated_gradient_is_the_exact_batch_mean(model, tmp_path):
    """micro_batch_size 1, 2 (uneven last micro-batch) and 3 give the gradient of the mean loss (spec §10.4)."""
    import torch

    batch = [make_record(i) for i in range(3)]
    grads = {}
    for mbs in (1, 2, 3):
        settings = TrainSettings(precision="fp32", micro_batch_size=mbs)
        metrics, grads[mbs] = _grads(model, batch, settings)
        assert metrics["queries"] == 3 and metrics["tokens"] > 0
    # the mean of per-query gradients, computed independently
    single = [_grads(model, [r], TrainSettings(precision="fp32"))[1] for r in batch]
    def rel(a, b):
        return float((a - b).norm() / b.norm().clamp_min(1e-30))

    for name, g in grads[3].items():
        mean = sum(s[name] for s in single) / 3
        for mbs in (1, 2):
            assert rel(grads[mbs][name], g) < 1e-5, (name, mbs)
        assert rel(mean, g) < 1e-4, name  # separate forward passes: float32 rounding differs slightly
    # the authors' bug (spec §10.4) — only the last micro-batch, scaled by 1/3 — is far from it
    assert max(rel(single[2][n] / 3, g) for n, g in grads[3].items()) > 0.1
    assert any(float(g.abs().max()) > 0 for g in grads[3].values())


def test_step_loss_is_the_mean_of_per_query_losses(model):
    batch = [make_record(i) for i in range(3)]
    singles = [_grads(model, [r], TrainSettings(precision="fp32"))[0]["loss"] for r in batch]
    metrics, _ = _grads(model, batch, TrainSettings(precision="fp32", micro_batch_size=2))
    assert metrics["loss"] == pytest.approx(sum(singles) / 3, rel=1e-5)


def test_kl_is_zero_against_itself_and_positive_otherwise(model):
    import torch

    batch = [make_record(i) for i in range(2)]
    settings = TrainSettings(precision="fp32", kl_beta=0.5)
    same = copy.deepcopy(model).eval().requires_grad_(False)
    metrics, _ = _grads(model, batch, settings, reference_model=same)
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)
    other = copy.deepcopy(same)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    metrics_kl, grads_kl = _grads(model, batch, settings, reference_model=other)
    assert metrics_kl["kl"] > 1e-4
    _, grads_plain = _grads(model, batch, TrainSettings(precision="fp32"))
    assert any(not torch.allclose(grads_kl[n], grads_plain[n]) for n in grads_plain)  # the KL pulls the gradient
    with pytest.raises(ValueError, match="reference model"):
        _grads(model, batch, settings)


def test_gradient_checkpointing_gives_the_same_gradient(model):
    import torch

    batch = [make_record(i) for i in range(2)]
    settings = TrainSettings(precision="fp32", micro_batch_size=2)
    _, plain = _grads(model, batch, settings)
    enable_activation_checkpointing(model)
    assert any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
    model.train()
    _, checkpointed = _grads(model, batch, settings)
    assert all(torch.allclose(checkpointed[n], g, rtol=1e-5, atol=1e-8) for n, g in plain.items())


# ------------------------------------------------------------------------------- optimizers and schedules
def test_optimizers_use_pytorch_defaults(model):
    import torch

    params = list(model.parameters())
    adamw = build_optimizer(params, TrainSettings(lr=5e-7))
    assert isinstance(adamw, torch.optim.AdamW)
    group = adamw.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (5e-7, (0.9, 0.999), 1e-8, 0.01)
    rms = build_optimizer(params, TrainSettings(lr=1e-6, optimizer="rmsprop"))
    assert isinstance(rms, torch.optim.RMSprop)
    group = rms.param_groups[0]
    assert (group["lr"], group["alpha"], group["eps"], group["momentum"], group["weight_decay"]) == \
        (1e-6, 0.99, 1e-8, 0, 0.0)
    assert build_optimizer(params, TrainSettings(optimizer="rmsprop", weight_decay=0.1)).param_groups[0][
        "weight_decay"] == 0.1


def _lrs(settings: TrainSettings, steps: int) -> list[float]:
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=settings.lr)
    sched = build_scheduler(opt, settings, steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant_schedule():
    assert _lrs(TrainSettings(lr=1e-3), 4) == [1e-3] * 4


def test_linear_warmup_matches_the_authors_scheduler():
    """spec §4.2/§10.5: get_scheduler("linear", num_warmup_steps=1, num_training_steps=15): LR 0 at step 1,
    then (15 - k) / 14 at step k + 1."""
    import torch
    from transformers import get_scheduler

    settings = TrainSettings(lr=1e-3, schedule="linear_warmup", warmup_steps=1, schedule_total_steps=15)
    ours = _lrs(settings, 6)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1e-3)
    ref_sched = get_scheduler("linear", optimizer=opt, num_warmup_steps=1, num_training_steps=15)
    theirs = []
    for _ in range(6):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref_sched.step()
    assert ours == pytest.approx(theirs)
    assert ours[0] == 0.0 and ours[1] == pytest.approx(1e-3) and ours[2] == pytest.approx(1e-3 * 13 / 14)
    # default length = the iteration's steps: the last step still has a positive LR only if T > steps
    f = lr_multiplier(TrainSettings(schedule="linear_warmup"), 4)
    assert [f(k) for k in range(4)] == pytest.approx([0.0, 1.0, 2 / 3, 1 / 3])


def test_clipping_caps_the_gradient_norm_and_reports_the_raw_norm(model):
    import torch

    batch = [make_record(0)]
    settings = TrainSettings(precision="fp32", lr=1.0, max_grad_norm=1e-4, optimizer="rmsprop")
    _grads(model, batch, settings)
    params = [p for p in model.parameters() if p.requires_grad]
    raw = torch.nn.utils.get_total_norm([p.grad for p in params]).item()
    assert raw > 1e-4
    direction = {id(p): p.grad.clone() / raw for p in params}
    clipped = {}
    opt = torch.optim.SGD(params, lr=0.0)  # lr 0: inspect the clipped gradient through the step hook
    opt.register_step_pre_hook(lambda o, a, k: clipped.update(
        norm=torch.nn.utils.get_total_norm([p.grad for p in params]).item(),
        cos=min(float((p.grad / p.grad.norm()).flatten() @ (direction[id(p)] / direction[id(p)].norm()).flatten())
                for p in params if p.grad.norm() > 0)))
    lr, norm = apply_update(params, opt, build_scheduler(opt, settings, 1), settings)
    assert norm == pytest.approx(raw, rel=1e-5)
    assert clipped["norm"] == pytest.approx(1e-4, rel=1e-3)
    assert clipped["cos"] == pytest.approx(1.0, abs=1e-4)  # same direction
    assert all(p.grad is None for p in params)  # zeroed for the next step


# ------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_is_safetensors_and_reloads_with_the_same_logits(model, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "stale.bin").write_text("old")  # an earlier attempt's leftovers are replaced, not merged
    save_checkpoint(model, model._tok, out)
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    assert not (out / "stale.bin").exists() and not list(out.glob("*.bin"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp dirs left behind
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    ids = model._tok(["The cat sat on the mat."], return_tensors="pt")["input_ids"]
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reloaded(ids).logits, atol=1e-6)
