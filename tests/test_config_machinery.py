"""YAML loading, typed -o overrides, one-line validation errors with file:line, and secret redaction."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field

from sami_toolkit.core.config import REDACTED, apply_overrides, load_config, parse_override, redact
from sami_toolkit.core.errors import ConfigError


class Train(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = Field(1e-6, description="learning rate")
    optimizer: str = "adamw"


class Toy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    steps: list[int] = []
    bf16: bool = False
    train: Train = Train()


@pytest.mark.parametrize("text,expected", [
    ("train.lr=5e-5", (["train", "lr"], 5e-5)),
    ("steps=[2, 4, 6]", (["steps"], [2, 4, 6])),
    ("bf16=true", (["bf16"], True)),
    ("name=my run", (["name"], "my run")),
    ("judge=null", (["judge"], None)),
    ("n=3", (["n"], 3)),
])
def test_overrides_are_typed(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("bad", ["no-equals-sign", "=3", "a..b=1"])
def test_bad_overrides_are_rejected(bad):
    with pytest.raises(ConfigError):
        parse_override(bad)


def test_apply_overrides_creates_nested_keys_without_mutating_input():
    data = {"train": {"lr": 1.0}}
    out = apply_overrides(data, ["train.optimizer=rmsprop", "sampler.options.max_new_tokens=8"])
    assert out == {"train": {"lr": 1.0, "optimizer": "rmsprop"}, "sampler": {"options": {"max_new_tokens": 8}}}
    assert data == {"train": {"lr": 1.0}}


def test_malformed_yaml_reports_file_line_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntrain:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, Toy)
    message = str(excinfo.value)
    assert message.startswith(f"{path}:") and "invalid YAML" in message
    line = int(message.split(":")[1])
    assert line >= 3


def test_unknown_key_and_wrong_type_name_the_field_and_line(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("name: x\ntrain:\n  lr: fast\n  optimiser: adamw\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, Toy)
    lines = str(excinfo.value).splitlines()
    assert len(lines) == 2
    assert any(f"{path}:3: train.lr:" in line and "'fast'" in line for line in lines)
    assert any(f"{path}:4: train.optimiser: unknown key" in line for line in lines)


def test_overrides_are_validated_too(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("name: x\n")
    config = load_config(path, Toy, ["train.lr=5e-5", "steps=[1,2]"])
    assert config.train.lr == 5e-5 and config.steps == [1, 2]
    with pytest.raises(ConfigError, match="steps"):
        load_config(path, Toy, ["steps=abc"])


def test_redact_masks_secret_looking_keys_only():
    data = {"judge": {"options": {"api_key": "sk-live-123", "api_key_env": "OPENAI_API_KEY", "model": "gpt-4"}},
            "hub_token": "hf_abc", "list": [{"password": "p"}], "empty_token": ""}
    out = redact(data)
    assert out["judge"]["options"]["api_key"] == REDACTED
    assert out["judge"]["options"]["api_key_env"] == "OPENAI_API_KEY"  # names an env var; not a secret
    assert out["judge"]["options"]["model"] == "gpt-4"
    assert out["hub_token"] == REDACTED and out["list"][0]["password"] == REDACTED
    assert "sk-live-123" not in repr(out)
