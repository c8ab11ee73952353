"""Model cards (parsed back with huggingface_hub's ModelCard) and ``sami-kit push`` against a local Hub stand-in
(tests/hub_server.py, reached through HF_ENDPOINT, recording every request)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hub_server import HubServer
from run_helpers import tiny_config

from sami_toolkit.cli import main
from sami_toolkit.core.io import atomic_write_json
from sami_toolkit.core.run_dir import RunDir
from sami_toolkit.hub.model_card import base_license, base_model_id, build_model_card, write_model_card
from sami_toolkit.hub.push import plan_push

TOKEN = "hf_testtokenABCDEF1234567890"
METRICS = {"iteration": 1, "steps": 1, "mi_infonce_constitutions": 0.1234, "mi_infonce_constitutions_sem": 0.01,
           "win_rate_vs_base": 0.625, "win_rate_vs_base_ci_low": 0.5, "win_rate_vs_base_ci_high": 0.75,
           "mi_scorer": "transformers"}


@pytest.fixture
def run_dir(tmp_path, tiny_model_dir) -> Path:
    """A run directory whose iteration 1 finished training (the tiny model's files as its checkpoint)."""
    from sami_toolkit.run.config import load_run_config
    from sami_toolkit.text.principles import load_principle_set

    config = load_run_config(tiny_config(tmp_path, tiny_model_dir))
    run = RunDir(tmp_path / "run")
    run.create(config=config.model_dump(mode="json"), config_hash="x", seed=1,
               principles=load_principle_set(config.principles).model_dump(mode="json"))
    checkpoint = run.checkpoint_dir(1)
    shutil.copytree(tiny_model_dir, checkpoint)
    atomic_write_json(run.iteration_dir(1) / "train.json",
                      {"trainer": "torch", "steps": 1, "batch_size": 2, "from": "base", "base_model": config.model,
                       "precision": "fp32", "metrics": [{"step": 1, "loss": 0.69}]})
    atomic_write_json(run.metrics_path(1), METRICS)
    run.mark_done(1, "train", checkpoint)
    (run.root / "summary.md").write_text("# SAMI run tiny\n")
    (run.root / "report.html").write_text("<html></html>")
    return run.root


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants

    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        yield server


def _cli(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


# ------------------------------------------------------------------------------------------------ model card
def test_model_card_parses_back_with_the_hub_metadata(run_dir):
    from huggingface_hub import ModelCard

    path = write_model_card(run_dir, 1)
    assert path == run_dir / "iterations" / "1" / "checkpoint" / "README.md"
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-generation"
    assert {"sami", "sami-kit", "tldr", "principles-tldr-mistral"} <= set(data["tags"])
    assert "base_model" not in data  # the tiny model is a local directory: no hub id to name
    assert data["sami_kit"]["iteration"] == 1 and data["sami_kit"]["principle_set"] == "tldr-mistral"
    text = card.text
    assert "## Constitution" in text and "tldr-mistral" in text
    assert "| learning rate | 0.001 |" in text and "| precision | fp32 |" in text
    assert "| MI, InfoNCE constitution side (headline bound) | 0.1234 ± 0.01 |" in text
    assert "| win rate vs base | 62.5% | [50.0%, 75.0%] | `win_rate_vs_base` |" in text
    assert "AutoModelForCausalLM.from_pretrained" in text and "{constitution}" in text


def test_model_card_names_a_hub_base_model_its_license_and_datasets(run_dir):
    import yaml

    config = run_dir / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["model"] = "smollm2"
    data["data"]["source"] = {"name": "tldr", "options": {}}
    config.write_text(yaml.safe_dump(data))
    card = build_model_card(run_dir, 1, repo_id="someone/tiny-sami")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.license == "apache-2.0"
    assert card.data.datasets == ["openai/summarize_from_feedback"]
    assert 'from_pretrained("someone/tiny-sami")' in card.text and card.text.lstrip().startswith("# someone/tiny-sami")
    assert base_model_id("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B" and base_model_id(str(run_dir)) is None


def test_base_license_comes_from_a_local_base_card(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# base\n")
    assert base_license(str(tmp_path)) == "mit"
    assert base_license(str(tmp_path / "nothing")) is None


def test_a_lora_checkpoint_gets_the_peft_card(run_dir):
    (run_dir / "iterations" / "1" / "checkpoint" / "adapter_config.json").write_text("{}")
    card = build_model_card(run_dir, 1)
    assert card.data.library_name == "peft" and "AutoPeftModelForCausalLM" in card.text


# ------------------------------------------------------------------------------------------------------ push
def test_dry_run_lists_the_upload_and_needs_no_token(run_dir, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    code, out, err = _cli(["push", str(run_dir), "--repo-id", "me/tiny-sami", "--with-report", "--dry-run",
                           "--json"], capsys)
    assert code == 0, err
    plan = json.loads(out)
    paths = [f["path"] for f in plan["files"]]
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json", "sami-kit/summary.md",
            "sami-kit/report.html", "sami-kit/metrics.json"} <= set(paths)
    assert plan["iteration"] == 1 and plan["dry_run"] is True and plan["revision"] == "main"
    code, _, err = _cli(["push", str(run_dir), "--repo-id", "me/tiny-sami", "--dry-run"], capsys)
    assert code == 0 and "would upload iteration 1" in err and "model.safetensors" in err


def test_push_uploads_the_checkpoint_and_its_card(run_dir, hub, capsys):
    from huggingface_hub import ModelCard

    code, out, err = _cli(["push", str(run_dir), "--repo-id", "me/tiny-sami", "--private", "--with-report",
                           "--json"], capsys)
    assert code == 0, err
    state = hub.state
    assert state.repos == {"me/tiny-sami": {"private": True}}
    assert any(r.path == "/api/validate-yaml" for r in state.requests)  # the card's metadata was checked
    assert all(r.headers.get("authorization", r.headers.get("Authorization")) == f"Bearer {TOKEN}"
               for r in state.requests if r.method == "POST")
    stored = state.files[("me/tiny-sami", "main")]
    checkpoint = run_dir / "iterations" / "1" / "checkpoint"
    for path in checkpoint.iterdir():
        assert stored[path.name] == path.read_bytes(), path.name
    assert stored["sami-kit/summary.md"] == b"# SAMI run tiny\n"
    card = ModelCard(stored["README.md"].decode())
    assert "sami-kit" in card.data.tags and 'from_pretrained("me/tiny-sami")' in card.text
    result = json.loads(out)
    assert result["url"].startswith(f"{hub.url}/me/tiny-sami/commit/")
    assert TOKEN not in out + err
    assert not list(run_dir.glob(".push-staging-*"))  # staging removed


def test_push_to_a_revision_creates_the_branch(run_dir, hub, capsys):
    code, _, err = _cli(["push", str(run_dir), "--repo-id", "me/tiny-sami", "--revision", "iter-1"], capsys)
    assert code == 0, err
    assert ("me/tiny-sami", "iter-1") in hub.state.branches
    assert "model.safetensors" in hub.state.files[("me/tiny-sami", "iter-1")]
    assert "uploaded" in err


def test_push_sends_weights_through_git_lfs_when_the_hub_asks(run_dir, monkeypatch, capsys):
    """The legacy LFS path (what huggingface_hub uses without hf_xet): the server marks *.safetensors as LFS."""
    import huggingface_hub._commit_api
    import huggingface_hub.constants
    import huggingface_hub.hf_api

    monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)
    monkeypatch.setattr(huggingface_hub._commit_api, "is_xet_available", lambda: False)
    with HubServer(lfs_suffixes=(".safetensors",)) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        code, _, err = _cli(["push", str(run_dir), "--repo-id", "me/tiny-sami"], capsys)
    assert code == 0, err
    weights = (run_dir / "iterations" / "1" / "checkpoint" / "model.safetensors").read_bytes()
    assert any(r.method == "PUT" and r.path.startswith("/lfs-upload/") for r in server.state.requests)
    assert server.state.commits[-1]["lfs"] == ["model.safetensors"]
    assert server.state.files[("me/tiny-sami", "main")]["model.safetensors"] == weights


def test_push_without_a_token_is_exit_2(run_dir, hub, capsys, monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    code, _, err = _cli(["push", str(run_dir), "--repo-id", "me/tiny-sami"], capsys)
    assert code == 2 and "no Hugging Face token" in err and "HF_TOKEN" in err
    assert hub.state.requests == []


def test_a_refused_token_is_exit_2_and_never_printed(run_dir, capsys, monkeypatch):
    import huggingface_hub.constants

    with HubServer(status_for_create=403) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        code, out, err = _cli(["push", str(run_dir), "--repo-id", "someone-else/tiny"], capsys)
    assert code == 2, err
    assert "refused" in err and "HTTP 403" in err and TOKEN not in out + err and "Traceback" not in err


def test_an_unreachable_hub_is_exit_4(run_dir, capsys, monkeypatch):
    import socket

    import huggingface_hub.constants

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    code, out, err = _cli(["push", str(run_dir), "--repo-id", "me/tiny-sami"], capsys)
    assert code == 4, err
    assert "uploading to me/tiny-sami failed" in err and TOKEN not in out + err


def test_bad_inputs_are_exit_2(run_dir, tmp_path):
    from sami_toolkit.core.errors import ConfigError

    for repo_id in ("no-slash", "a/b/c", "me/../x", "me/name.git"):
        with pytest.raises(ConfigError):
            plan_push(run_dir, repo_id=repo_id)
    with pytest.raises(ConfigError, match="iteration 2 has no finished checkpoint; trained iterations: 1"):
        plan_push(run_dir, repo_id="me/x", iteration=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a sami-kit run directory"):
        plan_push(tmp_path / "empty", repo_id="me/x")
