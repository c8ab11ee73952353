"""The one secret scrubber (issue 14 §4): every key the process may send is masked, whichever variable held it."""

from __future__ import annotations

import pytest

from sami_toolkit.core import secrets
from sami_toolkit.core.config import REDACTED, redact
from sami_toolkit.core.secrets import (
    MASK,
    Scrubber,
    is_secret_name,
    remember_secret,
    scrub,
    scrub_data,
    secret_values,
)

OPENAI = "sk-openai-0123456789abcdefXYZ"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credential variable of the developer's shell, and no key remembered by an earlier test."""
    import os

    for name in list(os.environ):
        if is_secret_name(name):
            monkeypatch.delenv(name)
    monkeypatch.setattr(secrets, "_REMEMBERED", set())


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_API_KEY", "AZURE_OPENAI_API_KEY",
                                  "HUGGINGFACE_API_KEY", "HF_TOKEN", "COHERE_API_KEY", "MISTRAL_API_KEY",
                                  "GROQ_API_KEY", "GEMINI_API_KEY", "TOGETHER_API_KEY", "AWS_SECRET_ACCESS_KEY",
                                  "REPLICATE_API_TOKEN", "MY_SERVICE_SECRET", "CLIENT_SECRET_VALUE", "DB_PASSWORD",
                                  "AWS_ACCESS_KEY_ID", "GITHUB_TOKEN", "my_api_key", "WATSONX_APIKEY"])
def test_credential_variables_are_recognised(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "TOKENIZERS_PARALLELISM", "HF_HUB_OFFLINE", "SAMI_KIT_CACHE",
                                  "OPENAI_API_BASE", "KEYBOARD", "LITELLM_LOCAL_MODEL_COST_MAP"])
def test_other_variables_are_not(name: str) -> None:
    assert not is_secret_name(name)


def test_every_credential_variable_is_scrubbed_whichever_held_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI)
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop1234")
    monkeypatch.setenv("SOME_FLAG_TOKEN", "1")  # too short to be a secret: "1" must survive
    monkeypatch.setenv("VERBOSE_PASSWORD", "true")
    text = f"error: key {OPENAI} rejected; hub said hf_abcdefghijklmnop1234; retry 1 of 3, verbose=true"
    assert scrub(text) == "error: key *** rejected; hub said ***; retry 1 of 3, verbose=true"
    assert OPENAI in secret_values() and "1" not in secret_values() and "true" not in secret_values()


def test_extra_and_remembered_keys_from_variables_of_any_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert scrub("key=abc", extra=["abcdefghijk"]) == "key=abc"  # unrelated short text is left alone
    assert scrub("sent abcdefghijk", extra=["abcdefghijk", None, ""]) == "sent ***"
    monkeypatch.setenv("MY_JUDGE", "zz-custom-credential-42")  # a name no pattern knows (api_key_env: MY_JUDGE)
    assert "zz-custom-credential-42" in scrub("got zz-custom-credential-42")
    remember_secret("zz-custom-credential-42")
    remember_secret("short")  # ignored
    assert scrub("got zz-custom-credential-42 short") == "got *** short"


def test_longest_secret_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A_API_KEY", "abcdefgh")
    monkeypatch.setenv("B_API_KEY", "abcdefgh-and-more")
    assert scrub("x abcdefgh-and-more y") == "x *** y"  # not "***-and-more"
    assert secret_values()[:2] == ["abcdefgh-and-more", "abcdefgh"]


@pytest.mark.parametrize("text, expected", [
    ("Authorization: Bearer sk-unknown-0123456789", "Authorization: Bearer ***"),
    ('{"authorization": "Bearer abc"}', '{"authorization": "Bearer ***"}'),
    ("headers={'Authorization': 'Basic dXNlcjpwYXNz'}", "headers={'Authorization': 'Basic ***'}"),
    ("curl -H 'Bearer tok3n-value-99'", "curl -H 'Bearer ***'"),
    ("GET /v1/models?api_key=s3cr3t&x=1", "GET /v1/models?api_key=***&x=1"),
    ('{"api-key": "s3cr3t", "x-api-key": "other"}', '{"api-key": "***", "x-api-key": "***"}'),
    ("OPENAI_API_KEY=sk-live-abcdef123 python run.py", "OPENAI_API_KEY=*** python run.py"),
    ("password: hunter22", "password: ***"),
])
def test_credential_shaped_text_is_masked(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize("text", [
    "Comparison: Response A follows the constitution.\nFinal Response: A",
    "The bearer of bad news arrived; basic principles apply.",  # prose: no credential
    "api_key_env 'OPENAI_API_KEY' names an environment variable that is not set",  # names a variable, no value
    "max_tokens=200, top_p=0.9; 350 tokens at most",
    "",
])
def test_ordinary_text_is_untouched(text: str) -> None:
    assert scrub(text) == text


def test_scrub_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI)
    once = scrub(f"Authorization: Bearer {OPENAI}; api_key={OPENAI}")
    assert once == "Authorization: Bearer ***; api_key=***" and scrub(once) == once


def test_scrubber_snapshot_for_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI)
    clean = Scrubber(extra=["custom-key-123456"])
    assert [clean(t) for t in (f"a {OPENAI}", "b custom-key-123456", "", "plain")] == ["a ***", "b ***", "", "plain"]
    monkeypatch.setenv("LATE_API_KEY", "set-after-the-snapshot")
    assert clean("set-after-the-snapshot") == "set-after-the-snapshot"  # a snapshot: take one per batch
    assert Scrubber()("set-after-the-snapshot") == MASK


def test_scrub_data_walks_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-0123456789abcdef")
    record = {"id": "q1", "raw": ["fine", "echo sk-ant-0123456789abcdef"], "error": None, "cost": 0.5,
              "nested": ({"k": "sk-ant-0123456789abcdef"},)}
    out = scrub_data(record)
    assert out == {"id": "q1", "raw": ["fine", f"echo {MASK}"], "error": None, "cost": 0.5,
                   "nested": ({"k": MASK},)}
    assert record["raw"][1].endswith("abcdef")  # a copy: the input is unchanged


def test_redact_also_scrubs_values_under_ordinary_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI)
    config = {"judge": {"options": {"api_key": "pasted", "api_key_env": "OPENAI_API_KEY",
                                    "api_base": f"https://proxy.example/v1?key={OPENAI}",
                                    "system_template": f"use {OPENAI}"}}, "steps": [1, 2]}
    out = redact(config)
    assert out["judge"]["options"]["api_key"] == REDACTED
    assert out["judge"]["options"]["api_key_env"] == "OPENAI_API_KEY"
    assert out["judge"]["options"]["api_base"] == "https://proxy.example/v1?key=***"
    assert out["judge"]["options"]["system_template"] == "use ***" and out["steps"] == [1, 2]
    assert OPENAI not in repr(out)


def test_scrubbing_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = ("import sys; import sami_toolkit.core.secrets as s; s.scrub('x'); "
            "print(sorted(m for m in ('torch', 'pydantic', 'litellm', 'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_run_manifest_never_stores_a_secret_typed_on_the_command_line(tmp_path, monkeypatch):
    import json

    from sami_toolkit.core.run_dir import RunDir
    from sami_toolkit.plugins.loading import PluginSystem

    key = "sk-manifest-test-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setattr("sys.argv", ["sami-kit", "run", "cfg.yaml", "--judge-option", f"api_key={key}"])
    run = RunDir(tmp_path / "run")
    run.create(config={"name": "x"}, config_hash="h", seed=0, principles={"task": "tldr"},
               plugins=PluginSystem().records)
    text = (tmp_path / "run" / "manifest.json").read_text(encoding="utf-8")
    assert key not in text
    assert "api_key=***" in json.dumps(json.loads(text))  # argv is recorded, with the key masked
