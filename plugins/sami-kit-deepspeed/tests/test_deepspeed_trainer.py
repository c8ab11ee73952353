"""The ``deepspeed`` trainer: config generation (fast), and real DeepSpeed engines on a tiny model (slow): it
trains and saves a loadable checkpoint, its update equals the torch trainer's, and two gloo ranks end identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.training import TrainRequest, TrainSettings


def _trainer(name: str = "deepspeed", **options):
    from sami_toolkit import get_component

    return get_component("trainers", name, options)


def _loss(settings: TrainSettings):
    """The request's loss, resolved from the settings the way the loop does it."""
    from sami_toolkit import get_component

    return get_component("losses", settings.loss, settings.loss_options, where="train.loss_options")


def _weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    out: dict = {}
    for f in sorted(Path(directory).glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _request(model_dir: Path, pairs: Path, out: Path, **settings) -> TrainRequest:
    base = {"lr": 1e-3, "precision": "fp32", "micro_batch_size": 1}
    base.update(settings)
    train_settings = TrainSettings(**base)
    return TrainRequest(base_model=str(model_dir), pairs_path=pairs, output_dir=out, steps=1, batch_size=4, seed=3,
                        settings=train_settings, loss=_loss(train_settings))


# ------------------------------------------------------------------------------------------------- fast
def test_registered_with_alias_and_validated_options():
    from sami_kit_deepspeed.trainer import DeepSpeedTrainer

    assert isinstance(_trainer(), DeepSpeedTrainer) and isinstance(_trainer("ds"), DeepSpeedTrainer)
    with pytest.raises(ConfigError, match="zero_stage"):
        _trainer(zero_stage=4)
    with pytest.raises(ConfigError, match="zero_stages"):
        _trainer(zero_stages=2)


def test_ds_config_matches_the_settings():
    from sami_kit_deepspeed.config import DeepSpeedOptions, build_ds_config

    settings = TrainSettings(micro_batch_size=2, max_grad_norm=1.0, lr=5e-7)
    config = build_ds_config(settings, DeepSpeedOptions(zero_stage=3), world_size=8, gas=8, on_gpu=True)
    assert (config["train_micro_batch_size_per_gpu"], config["gradient_accumulation_steps"],
            config["train_batch_size"]) == (2, 8, 128)
    assert config["gradient_clipping"] == 1.0 and config["bf16"] == {"enabled": False}
    assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    params = config["optimizer"]["params"]
    assert config["optimizer"]["type"] == "AdamW" and params["lr"] == 5e-7 and params["weight_decay"] == 0.01
    assert params["torch_adam"] is True  # no JIT-compiled optimizer op unless asked for
    offload = build_ds_config(settings, DeepSpeedOptions(zero_stage=2, offload_optimizer=True), world_size=1, gas=1,
                              on_gpu=True)
    assert offload["optimizer"]["params"]["torch_adam"] is False  # ZeRO-Offload on GPUs: DeepSpeed's CPU Adam
    assert "zero_force_ds_cpu_optimizer" not in offload
    cpu = build_ds_config(TrainSettings(precision="bf16"), DeepSpeedOptions(zero_stage=0,
                          config_overrides={"zero_optimization": {"reduce_bucket_size": 1000}}),
                          world_size=1, gas=4, on_gpu=False)
    assert cpu["optimizer"]["params"]["torch_adam"] is True and cpu["gradient_clipping"] == 0.0
    assert cpu["bf16"] == {"enabled": True}
    assert cpu["zero_optimization"] == {"stage": 0, "reduce_bucket_size": 1000}  # overrides merge recursively
    rms = build_ds_config(TrainSettings(optimizer="rmsprop"), DeepSpeedOptions(zero_stage=2, offload_optimizer=True),
                          world_size=1, gas=1, on_gpu=False)
    assert "optimizer" not in rms and rms["zero_force_ds_cpu_optimizer"] is False
    assert rms["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    with pytest.raises(ConfigError, match="offload_param needs zero_stage: 3"):
        build_ds_config(settings, DeepSpeedOptions(zero_stage=2, offload_param=True), world_size=1, gas=1,
                        on_gpu=False)


def test_launch_commands():
    from sami_kit_deepspeed.config import DeepSpeedOptions
    from sami_kit_deepspeed.launch import launch_command

    cmd = launch_command(DeepSpeedOptions(num_processes=4), Path("/r/request.json"), 29511)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node=4" in cmd
    assert "--master_port=29511" in cmd and cmd[-3:] == ["-m", "sami_kit_deepspeed.train", "/r/request.json"]
    ds = launch_command(DeepSpeedOptions(launcher="deepspeed", hostfile=Path("/h"), num_nodes=2, num_processes=8),
                        Path("/r/request.json"), 29511)
    assert ds[0] == "deepspeed" and "--hostfile=/h" in ds and "--num_nodes=2" in ds and "--num_gpus=8" in ds
    assert ds[-3:] == ["--module", "sami_kit_deepspeed.train", "/r/request.json"]


def test_request_round_trips_through_json(tmp_path):
    from sami_kit_deepspeed.config import DeepSpeedOptions
    from sami_kit_deepspeed.launch import request_from_json, request_to_json

    settings = TrainSettings(lr=1e-6, lora={"r": 4})
    request = TrainRequest(base_model="m", pairs_path=tmp_path / "p.jsonl", output_dir=tmp_path / "o", steps=3,
                           batch_size=8, seed=5, settings=settings, loss=_loss(settings))
    back, options = request_from_json(json.loads(json.dumps(request_to_json(request, DeepSpeedOptions(zero_stage=1)))))
    assert back.settings == request.settings and back.output_dir == request.output_dir and back.steps == 3
    assert options.zero_stage == 1


# ------------------------------------------------------------------------------------------------- slow
@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [2, 3])
def test_single_process_update_equals_the_torch_trainer(tiny_model_dir, pairs_file, tmp_path, zero_stage):
    """One step, fp32, same seed: DeepSpeed (GAS = 4 micro-batches of 1 query) and the torch trainer (one
    micro-batch of 4) compute the same loss, gradient norm and new weights — the exact batch mean (spec §10.4)
    survives DeepSpeed's accumulation, and ZeRO-3 gathers the full weights to save."""
    import torch
    from transformers import AutoModelForCausalLM

    reference = _trainer("torch").train(_request(tiny_model_dir, pairs_file, tmp_path / "torch", micro_batch_size=4))
    result = _trainer(zero_stage=zero_stage).train(_request(tiny_model_dir, pairs_file, tmp_path / "ds"))
    ours, theirs = result.metrics[0], reference.metrics[0]
    assert result.precision == reference.precision == "fp32"
    assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
    for part in ("loss_row", "loss_col"):  # the loss's halves reach train.json and the trackers (spec §1.3)
        assert ours[part] == pytest.approx(theirs[part], rel=1e-5), part
    assert ours["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-4)
    assert ours["tokens"] == theirs["tokens"] and ours["lr"] == theirs["lr"]

    base, trained, expected = _weights(tiny_model_dir), _weights(result.checkpoint_dir), _weights(reference.checkpoint_dir)
    assert trained.keys() == base.keys()
    assert any(not torch.equal(trained[k], base[k]) for k in base)
    for k in base:
        assert torch.allclose(trained[k], expected[k], atol=1e-5), k
    model = AutoModelForCausalLM.from_pretrained(result.checkpoint_dir)
    assert model(torch.tensor([[1, 5, 9]])).logits.shape[-1] == model.config.vocab_size


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights(tiny_model_dir, pairs_file, tmp_path):
    """ZeRO-2 on 2 CPU processes (torchrun, gloo): both ranks hold the same final weights, which moved, and the
    global step equals the single-process torch trainer's."""
    import torch

    reference = _trainer("torch").train(_request(tiny_model_dir, pairs_file, tmp_path / "torch", micro_batch_size=4))
    seen = []
    request = _request(tiny_model_dir, pairs_file, tmp_path / "ds2")
    request.progress = lambda step, metrics: seen.append(step)
    result = _trainer(zero_stage=2, num_processes=2, keep_launch_dir=True).train(request)
    assert seen == [1] and result.steps == 1 and result.precision == "fp32"

    launch_dir = tmp_path / ".ds2.deepspeed"
    ranks = [json.loads((launch_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["final_sha256"] == ranks[1]["final_sha256"]
    assert ranks[0]["initial_sha256"] == ranks[1]["initial_sha256"] != ranks[0]["final_sha256"]

    for key in ("loss", "loss_row", "loss_col"):  # summed over both ranks' queries
        assert result.metrics[0][key] == pytest.approx(reference.metrics[0][key], rel=1e-5), key
    assert result.metrics[0]["grad_norm"] == pytest.approx(reference.metrics[0]["grad_norm"], rel=1e-4)
    trained, expected = _weights(result.checkpoint_dir), _weights(reference.checkpoint_dir)
    assert all(torch.allclose(trained[k], expected[k], atol=1e-5) for k in expected)


@pytest.mark.slow
def test_launched_config_error_is_reported_as_one_line(tiny_model_dir, pairs_file, tmp_path):
    request = _request(tiny_model_dir, pairs_file, tmp_path / "odd")
    request.batch_size = 3
    with pytest.raises(ConfigError, match="batch_size=3 does not split evenly over 2 processes"):
        _trainer(zero_stage=0, num_processes=2).train(request)
