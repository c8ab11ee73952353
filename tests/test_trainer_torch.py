"""The built-in ``torch`` trainer end to end on a tiny random model: it trains from the base weights, follows the
schedule, keeps fp32 master weights under bf16-mixed, and saves loadable safetensors checkpoints (full or LoRA)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.training.request import TrainRequest, TrainResult
from sami_toolkit.training.settings import TrainSettings

from test_training import write_pairs  # noqa: E402  (tests/ is on sys.path under pytest's rootdir conftest)


def _weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    out: dict = {}
    for f in sorted(directory.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _trainer(**options):
    from sami_toolkit import get_component

    return get_component("trainers", "torch", options)


def _loss(settings: TrainSettings):
    """The request's loss, resolved from the settings the way the loop does it."""
    from sami_toolkit import get_component

    return get_component("losses", settings.loss, settings.loss_options, where="train.loss_options")


def _request(tiny_model_dir: Path, tmp_path: Path, name: str = "out", steps: int = 2, batch_size: int = 2,
             seed: int = 0, progress=None, **settings) -> TrainRequest:
    pairs = tmp_path / "pairs.jsonl"
    if not pairs.exists():
        write_pairs(pairs, 6)
    base = dict(lr=1e-3, precision="fp32")
    base.update(settings)
    train_settings = TrainSettings(**base)
    return TrainRequest(base_model=str(tiny_model_dir), pairs_path=pairs, output_dir=tmp_path / name, steps=steps,
                        batch_size=batch_size, seed=seed, settings=train_settings, loss=_loss(train_settings),
                        progress=progress)


def test_torch_trainer_is_registered_and_validates_options():
    from sami_toolkit.core.components import Trainer

    trainer = _trainer()
    assert isinstance(trainer, Trainer) and trainer.name == "torch"
    with pytest.raises(ConfigError, match="num_thread"):
        _trainer(num_thread=2)


def test_train_changes_weights_reports_steps_and_saves(tiny_model_dir, tmp_path):
    seen = []
    request = _request(tiny_model_dir, tmp_path, steps=2, progress=lambda step, m: seen.append((step, m)))
    result = _trainer().train(request)
    assert isinstance(result, TrainResult) and result.steps == 2 and result.checkpoint_dir == request.output_dir
    assert [s for s, _ in seen] == [1, 2]
    assert [m["step"] for m in result.metrics] == [1, 2]
    for m in result.metrics:
        assert set(m) >= {"step", "loss", "lr", "grad_norm", "seconds", "tokens"}
        assert m["lr"] == 1e-3 and m["grad_norm"] > 0 and m["tokens"] > 0 and 0 < m["loss"] < 5
    base, trained = _weights(tiny_model_dir), _weights(result.checkpoint_dir)
    assert base.keys() == trained.keys()
    assert all(t.dtype == base[k].dtype for k, t in trained.items())
    assert any(not (trained[k] == base[k]).all() for k in base)


def test_training_restarts_from_the_base_weights(tiny_model_dir, tmp_path):
    """Same request twice → identical weights: training never continues from an earlier checkpoint (spec §2.1)."""
    request = _request(tiny_model_dir, tmp_path, name="same", steps=1)
    first = _weights(_trainer().train(request).checkpoint_dir)
    second = _weights(_trainer().train(request).checkpoint_dir)
    assert all((first[k] == second[k]).all() for k in first)


def test_linear_warmup_first_step_has_lr_zero(tiny_model_dir, tmp_path):
    """spec §10.5: with the authors' schedule a 1-step iteration leaves the weights untouched."""
    result = _trainer().train(_request(tiny_model_dir, tmp_path, steps=1, schedule="linear_warmup",
                                       schedule_total_steps=15))
    assert result.metrics[0]["lr"] == 0.0
    base, trained = _weights(tiny_model_dir), _weights(result.checkpoint_dir)
    assert all((trained[k] == base[k]).all() for k in base)


def test_bf16_mixed_keeps_fp32_master_weights(tiny_model_dir, tmp_path):
    """bf16-mixed updates far below bf16's resolution survive in the fp32 checkpoint (spec §10.7)."""
    import torch

    from sami_toolkit.training.policy import load_policy

    request = _request(tiny_model_dir, tmp_path, steps=1, lr=1e-6, precision="bf16-mixed")
    model, _ = load_policy(request, "cpu")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    pure, _ = load_policy(_request(tiny_model_dir, tmp_path, precision="bf16"), "cpu")
    assert {p.dtype for p in pure.parameters()} == {torch.bfloat16}

    result = _trainer().train(request)
    assert result.precision == "bf16-mixed"  # what the loop records in train.json
    trained = _weights(result.checkpoint_dir)
    base = _weights(tiny_model_dir)
    assert all(t.dtype == torch.float32 for t in trained.values())
    deltas = [(trained[k] - base[k]).abs().max().item() for k in base]
    assert 0 < max(deltas) < 1e-4  # bf16 spacing near 1.0 is 7.8e-3: these updates would round away in bf16


def test_unknown_loss_fails_before_loading_a_model(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="'samii'. Did you mean 'sami'"):
        _trainer().train(_request(tiny_model_dir, tmp_path, loss="samii"))


@pytest.mark.slow
def test_lora_merged_and_adapter_saves(tiny_model_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    merged = _trainer().train(_request(tiny_model_dir, tmp_path, name="merged", kl_beta=0.1,
                                       lora={**lora, "save": "merged"}))
    adapter = _trainer().train(_request(tiny_model_dir, tmp_path, name="adapter", kl_beta=0.1,
                                        lora={**lora, "save": "adapter"}))
    merged_dir, adapter_dir = merged.checkpoint_dir, adapter.checkpoint_dir
    # the KL reference of a LoRA model is the same network with the adapter off: identical before the first
    # update (LoRA's B starts at zero), different after it
    assert merged.metrics[0]["kl"] == pytest.approx(0.0, abs=1e-7) and merged.metrics[1]["kl"] > 0

    # merged: a plain full checkpoint in which only the adapted projections moved
    assert not (merged_dir / "adapter_config.json").exists()
    base, merged = _weights(tiny_model_dir), _weights(merged_dir)
    assert base.keys() == merged.keys()
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)

    # adapter: only the adapter is saved, and base + adapter computes what the merged model computes
    assert (adapter_dir / "adapter_config.json").is_file() and (adapter_dir / "adapter_model.safetensors").is_file()
    assert not (adapter_dir / "model.safetensors").exists()
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter_dir)
    plain = AutoModelForCausalLM.from_pretrained(merged_dir)
    ids = torch.tensor([[1, 5, 9, 12, 40, 77]])
    with torch.no_grad():
        assert torch.allclose(with_adapter.eval()(ids).logits, plain.eval()(ids).logits, atol=1e-5)
