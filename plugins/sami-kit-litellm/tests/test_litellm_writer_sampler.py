"""The litellm principle writer (through ``sami-kit principles write``) and sampler against the local server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sami_toolkit.core.errors import InfrastructureError
from sami_toolkit.text.principles import load_principle_set
from sami_toolkit import get_component, load_plugins
from sami_toolkit.testing.server import Fault, OpenAIServer, last_user_message

import os

KEY_ENV = os.environ["SAMI_KIT_TEST_KEY_ENV"]  # set by this folder's conftest, which also sets the key per test
FAKE_KEY = "sk-test-SECRET-9f8e7d6c5b4a"  # the value conftest puts in KEY_ENV (checked below)

ANSWER = """1. Concise: Summaries should be brief and to the point.
2. Comprehensive: Summaries should include all important information.

Antitheses:
1. Concise: Summaries should be long and rambling.
2. Comprehensive: Summaries should leave out important information.
"""


def write_args(server: OpenAIServer, out: Path, *extra: str) -> list[str]:
    return ["principles", "write", "--task", "summarize reddit posts", "--principle", "concise", "--principle",
            "comprehensive", "--writer", "litellm", "-o", "model=openai/gpt-4-0613", "-o",
            f"api_base={server.api_base}", "-o", f"api_key_env={KEY_ENV}", "-o", "retry_backoff=0",
            "-o", "max_retries=1", "--out", str(out), *extra]


def test_plugin_registers_its_components() -> None:
    registry = load_plugins()
    assert registry.get("judges", "api") is registry.get("judges", "litellm")
    assert "litellm" in registry.names("principle-writers") and "litellm" in registry.names("samplers")
    assert registry.entry("judges", "litellm").plugin == "sami-kit-litellm"


def test_cli_principles_write_against_the_server(tmp_path: Path) -> None:
    from sami_toolkit.cli import cli

    with OpenAIServer(reply=ANSWER) as server:
        out = tmp_path / "mine.yaml"
        result = CliRunner().invoke(cli, write_args(server, out))
        assert result.exit_code == 0, result.output
        prompt = last_user_message(server.requests[0].body)
    assert prompt.startswith("I am writing a constitution for how to summarize reddit posts.")
    pset = load_principle_set(out)
    assert pset.writer == "openai/gpt-4-0613" and pset.task == "summarize reddit posts"
    assert pset.get("comprehensive").antithesis == "Summaries should leave out important information."
    assert (tmp_path / "mine.raw.txt").read_text(encoding="utf-8") == ANSWER
    assert FAKE_KEY not in result.output + out.read_text() + (tmp_path / "mine.raw.txt").read_text()


def test_cli_write_exit_codes(tmp_path: Path) -> None:
    from sami_toolkit.cli import cli

    runner = CliRunner()
    with OpenAIServer(reply="1. Concise: Be brief.\n2. Comprehensive: Be complete.") as server:
        result = runner.invoke(cli, write_args(server, tmp_path / "half.yaml"))
        assert server.count == 2  # asked again once (attempts: 2), the retry naming what was missing
    assert result.exit_code == 4, result.output  # no usable answer: the writer failed
    assert "antithesis of 'concise'" in result.stderr and "half.raw.txt" in result.stderr
    assert (tmp_path / "half.raw.txt").read_text(encoding="utf-8").startswith("1. Concise: Be brief.")
    assert not (tmp_path / "half.yaml").exists()

    with OpenAIServer(fault=lambda req, n: Fault("500")) as server:
        result = runner.invoke(cli, write_args(server, tmp_path / "down.yaml"))
        assert server.count == 2  # one try plus max_retries=1
    assert result.exit_code == 4 and "gave up after 2 attempts" in result.stderr
    assert "Traceback" not in result.output


def test_sampler_keeps_order_and_fails_loudly() -> None:
    def shout(req: dict[str, Any]) -> str:
        return last_user_message(req).upper()

    with OpenAIServer(reply=shout, latency=0.02) as server:
        sampler = get_component("samplers", "litellm", {"api_base": server.api_base, "api_key_env": KEY_ENV,
                                                         "concurrency": 4, "max_tokens": 50, "retry_backoff": 0})
        prompts = [f"prompt number {i}" for i in range(10)]
        done: list[int] = []
        out = sampler.generate("openai/some-model", prompts, progress=done.append)
        assert out == [p.upper() for p in prompts]
        assert sum(done) == 10
        body = server.requests[0].body
        assert body["max_tokens"] == 50 and body["temperature"] == 0.0 and body["model"] == "some-model"

        server.fault = lambda req, n: Fault("500") if "number 3" in last_user_message(req) else None
        with pytest.raises(InfrastructureError, match="1 of 10 prompts failed"):
            sampler.generate("openai/some-model", prompts)


def test_cli_write_rejects_an_unknown_task_before_any_call(tmp_path: Path) -> None:
    from sami_toolkit.cli import cli

    with OpenAIServer(reply=ANSWER) as server:
        args = write_args(server, tmp_path / "x.yaml")
        args[args.index("--task") + 1] = "tldrr"
        result = CliRunner().invoke(cli, args)
        assert server.count == 0
    assert result.exit_code == 2 and "unknown task 'tldrr'" in result.stderr and "Did you mean 'tldr'?" in result.stderr


def test_cli_write_asks_again_when_the_antithesis_repeats_the_definition(tmp_path: Path) -> None:
    """Issue 14 §6: an answer whose antithesis equals its definition is not accepted; the retry names the problem."""
    from sami_toolkit.cli import cli

    same = ANSWER.replace("Summaries should be long and rambling.", "Summaries should be brief and to the point.")
    with OpenAIServer(reply=lambda req: ANSWER if "previous answer could not be used" in last_user_message(req)
                      else same) as server:
        out = tmp_path / "mine.yaml"
        result = CliRunner().invoke(cli, write_args(server, out))
        prompts = [last_user_message(r.body) for r in server.requests]
    assert result.exit_code == 0, result.output
    assert len(prompts) == 2 and "the antithesis of 'concise' repeats its definition" in prompts[1]
    assert load_principle_set(out).get("concise").antithesis == "Summaries should be long and rambling."
    assert (tmp_path / "mine.raw.txt").read_text(encoding="utf-8") == ANSWER
    assert (tmp_path / "mine.attempt-1.raw.txt").read_text(encoding="utf-8") == same
