"""The litellm judge, sampler and principle writer against a *real* OpenAI-compatible server: vLLM's own.

The rest of this folder runs against ``sami_toolkit.testing.server`` (scripted faults: 429s, hangs, garbage); this
module checks that what those tests assume holds for a real server too.  A module-scoped fixture starts vLLM's
OpenAI server (``python -m vllm.entrypoints.openai.api_server``: the ``vllm serve`` console script of the CPU
build 0.32.0 fails on its own package metadata) with the embedded SmolLM2-135M-Instruct on a free port of
127.0.0.1, waits for ``/v1/models``, and kills its process group at the end (``SAMI_KIT_TEST_VLLM_PORT=N`` uses a
server already listening on port N instead, for working on these tests).  It runs only where vLLM is installed and
``SAMI_KIT_REAL_VLLM=1`` (``scripts/test.sh`` in ``.venv-vllm``); the start-up takes ~1-2 min on 2 cores.

Calls are counted on the server side from vLLM's Prometheus ``/metrics`` (``vllm:request_success_total``), so the
cache ("a rerun makes no calls") is seen end to end, not from the client's own bookkeeping.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

REAL = os.environ.get("SAMI_KIT_REAL_VLLM", "") not in ("", "0", "false", "False")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not REAL or importlib.util.find_spec("vllm") is None,
                                 reason="needs the real vLLM (SAMI_KIT_REAL_VLLM=1 in .venv-vllm)")]

KEY_ENV = os.environ["SAMI_KIT_TEST_KEY_ENV"]  # set by this folder's conftest (the server ignores keys)
MODEL = "openai/smollm2"  # litellm's openai provider + api_base: what `transport: auto` sends straight over HTTP
#: made-up prices (USD per token): vLLM reports usage, litellm has no price for a local model
PRICE_IN, PRICE_OUT = 1e-6, 2e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMServer:
    """A running ``vllm`` OpenAI server (its own process group) and its log."""

    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.api_base = f"http://127.0.0.1:{port}/v1"

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
            return response.read().decode()

    def successes(self) -> float:
        """Requests the engine finished (all finish reasons), from vLLM's Prometheus counters."""
        total = 0.0
        for line in self.get("/metrics").splitlines():
            if line.startswith("vllm:request_success_total"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    from sami_toolkit.models.loading import resolve_model

    reuse = os.environ.get("SAMI_KIT_TEST_VLLM_PORT")  # developing these tests: a server you started yourself
    if reuse:
        yield VLLMServer(None, int(reuse), Path(os.devnull))  # type: ignore[arg-type]
        return
    model = resolve_model("smollm2")
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
           "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--enforce-eager", "--max-model-len", "2048", "--seed", "0"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = VLLMServer(proc, port, log)
    try:
        deadline = time.monotonic() + 480
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm's server exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                if json.loads(server.get("/v1/models"))["data"][0]["id"] == "smollm2":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm's server did not answer /v1/models in 480 s:\n{server.log_tail()}")
            time.sleep(1)
        yield server
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's whole process group (API server, engine core, worker), SIGKILL after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _judge(server: VLLMServer, transport: str, cache: Path | None, **options: Any) -> Any:
    from sami_toolkit import get_component

    opts = {"model": MODEL, "api_base": server.api_base, "api_key_env": KEY_ENV, "transport": transport,
            "cache_path": str(cache) if cache is not None else "none", "max_tokens": 60, "timeout": 120,
            "max_retries": 1, "retry_backoff": 0.0, "concurrency": 4,
            "input_cost_per_token": PRICE_IN, "output_cost_per_token": PRICE_OUT, **options}
    return get_component("judges", "litellm", opts)


#: SmolLM2-135M cannot follow the paper's judge prompt (its answers never contain "Final Response: A/B"), but it
#: copies a line it is told to: with this template and responses that are themselves verdict lines, its greedy
#: answer is "Final Response: A" - a parseable verdict, so the verdict path (cache hits, counts, the gate) runs
#: against the real server. These tests are about the plumbing, not about judging quality.
ECHO_TEMPLATE = ("Query: {query}\nRules: {constitution}\nResponse A: {response_a}\nResponse B: {response_b}\n\n"
                 "Reply with exactly the following line and nothing else:\nFinal Response: A\n")


def _pairs(n: int, *, echo: bool = True) -> list[Any]:
    from sami_toolkit.judging.pairwise import ComparisonPair

    return [ComparisonPair(id=f"q{i}", query=f"POST: my cat number {i} ate my homework.",
                           constitution="1. Summaries should be brief.",
                           candidate="Final Response: A" if echo else f"The post is about cat {i}.",
                           baseline="Final Response: B" if echo else "The post is about a long story.", task="tldr")
            for i in range(n)]


@pytest.mark.parametrize("transport", ["auto", "litellm"])
def test_judge_counts_costs_and_cache_against_vllm(vllm_server: VLLMServer, transport: str, tmp_path: Path) -> None:
    from sami_toolkit.judging.pairwise import count_outcomes, judge_pairs

    judge = _judge(vllm_server, transport, tmp_path / "j.sqlite", template=ECHO_TEMPLATE)
    assert judge.client().openai_model_name(MODEL) == ("smollm2" if transport == "auto" else None)
    before = vllm_server.successes()
    outcomes = judge_pairs(judge, _pairs(4))
    assert vllm_server.successes() - before == 4  # one real call per pair
    counts = count_outcomes(outcomes)
    assert counts["failed"] == 0 and counts["wins"] + counts["losses"] + counts["ties"] == counts["n"] == 4, counts
    for o in outcomes:
        assert o.raw == ["Final Response: A"] and o.verdicts == ["A"] and not o.cached
        # usage as vLLM reported it, at the configured prices: more than the prompt's ~60 tokens at the input price
        assert 60 * PRICE_IN < o.cost < 1000 * PRICE_IN
    # the candidate sits in slot A or B by the seed: "A" is a win or a loss accordingly
    assert counts["wins"] == sum(o.outcome == 1.0 for o in outcomes) and counts["losses"] == 4 - counts["wins"]
    before = vllm_server.successes()
    again = judge_pairs(_judge(vllm_server, transport, tmp_path / "j.sqlite", template=ECHO_TEMPLATE), _pairs(4))
    assert vllm_server.successes() == before  # every verdict from the cache: zero calls reached the server
    assert [a.outcome for a in again] == [o.outcome for o in outcomes]
    assert all(a.cached and a.cost == 0.0 for a in again)


@pytest.mark.parametrize("transport", ["auto", "litellm"])
def test_unparseable_answers_are_failures_kept_as_text(vllm_server: VLLMServer, transport: str,
                                                       tmp_path: Path) -> None:
    """With the paper's judge prompt the 135M model rambles: every judgment fails with the reason and the model's
    answer is kept. The answer is cached as text (another parse may read it), so a rerun makes no call and reports
    the same failures; ``reask_unparsed`` asks the server again."""
    from sami_toolkit.judging.pairwise import count_outcomes, judge_pairs

    cache = tmp_path / "j.sqlite"
    before = vllm_server.successes()
    outcomes = judge_pairs(_judge(vllm_server, transport, cache), _pairs(2, echo=False))
    assert vllm_server.successes() - before == 2 and count_outcomes(outcomes)["failed"] == 2
    assert all(o.raw and o.raw[0].strip() and "could not parse" in (o.error or "") and o.cost > 0 for o in outcomes)
    before = vllm_server.successes()
    again = judge_pairs(_judge(vllm_server, transport, cache), _pairs(2, echo=False))
    assert vllm_server.successes() == before
    assert count_outcomes(again)["failed"] == 2 and [a.raw for a in again] == [o.raw for o in outcomes]
    judge_pairs(_judge(vllm_server, transport, cache, reask_unparsed=True), _pairs(2, echo=False))
    assert vllm_server.successes() - before == 2


@pytest.mark.parametrize("transport", ["auto", "litellm"])
def test_errors_of_a_real_server_are_classified(vllm_server: VLLMServer, transport: str) -> None:
    from sami_toolkit.core.errors import InfrastructureError
    from sami_toolkit.judging.pairwise import judge_pairs

    # an unknown model: vLLM answers 404, fatal for every call (exit 4), no retry storm
    before = vllm_server.successes()
    with pytest.raises(InfrastructureError, match="(?i)not ?found|does not exist") as info:
        judge_pairs(_judge(vllm_server, transport, None, model="openai/no-such-model", max_retries=3), _pairs(2))
    assert info.value.exit_code == 4 and vllm_server.successes() == before
    # a prompt longer than --max-model-len: HTTP 400, that item fails without retries, the others are judged
    long = _pairs(2)
    long[1].query = "POST: " + "my cat ate my homework again. " * 400
    out = judge_pairs(_judge(vllm_server, transport, None, max_retries=3), long)
    assert out[0].raw and out[1].outcome is None
    assert re.search(r"(?i)bad ?request|400|context length|maximum", out[1].error or ""), out[1].error
    assert "gave up" not in (out[1].error or "")  # a 400 is final: never retried
    # a client timeout far below the generation time: retried, then bounded ("gave up after 2 attempts")
    slow = judge_pairs(_judge(vllm_server, transport, None, timeout=0.01, max_retries=1), _pairs(1))
    assert slow[0].outcome is None and "gave up after 2 attempts" in (slow[0].error or "")


def test_sampler_generates_in_order_through_vllm(vllm_server: VLLMServer) -> None:
    from sami_toolkit import get_component

    sampler = get_component("samplers", "litellm", {"api_base": vllm_server.api_base, "api_key_env": KEY_ENV,
                                                     "max_tokens": 12, "concurrency": 4, "retry_backoff": 0})
    prompts = [f"Repeat the number {i}." for i in range(4)] + ["Say hello."]
    done: list[int] = []
    before = vllm_server.successes()
    out = sampler.generate(MODEL, prompts, progress=done.append)
    assert vllm_server.successes() - before == 5 and sum(done) == 5
    assert len(out) == 5 and all(isinstance(t, str) and t.strip() for t in out)
    # greedy: the same prompts give the same texts, in the same order, whatever the completion order
    assert sampler.generate(MODEL, prompts[::-1]) == out[::-1]


def test_smollm2_stops_at_eos_on_the_real_engine(vllm_server: VLLMServer) -> None:
    """The engine ends a response at the model's EOS (<|im_end|>) and leaves it out of the text; the random tiny
    model of the plugin tests never emits EOS, SmolLM2 does."""
    finished = []
    for prompt in ("Say hello.", "What is 2 + 2?", "Name a colour."):
        body = json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": prompt}],
                           "max_tokens": 64, "temperature": 0}).encode()
        request = urllib.request.Request(f"{vllm_server.api_base}/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            data = json.loads(response.read())
        choice = data["choices"][0]
        assert "<|im_end|>" not in choice["message"]["content"]
        finished.append((choice["finish_reason"], data["usage"]["completion_tokens"]))
    assert any(reason == "stop" and n < 64 for reason, n in finished), finished


def test_cli_principles_write_through_vllm(vllm_server: VLLMServer, tmp_path: Path) -> None:
    """SmolLM2-135M rarely follows the writer's format: either a principle set (exit 0) or exit 4 naming what was
    missing, with the model's raw answer kept; never a traceback."""
    from click.testing import CliRunner

    from sami_toolkit.cli import cli

    out = tmp_path / "mine.yaml"
    result = CliRunner().invoke(cli, [
        "principles", "write", "--task", "summarize reddit posts", "--principle", "concise", "--principle",
        "comprehensive", "--writer", "litellm", "-o", f"model={MODEL}", "-o", f"api_base={vllm_server.api_base}",
        "-o", f"api_key_env={KEY_ENV}", "-o", "max_tokens=200", "-o", "retry_backoff=0", "--out", str(out)])
    assert result.exit_code in (0, 4), result.output
    assert "Traceback" not in result.output
    raw = (tmp_path / "mine.raw.txt").read_text(encoding="utf-8")
    assert raw.strip(), "the server's answer is kept for inspection"
    if result.exit_code == 0:
        from sami_toolkit.text.principles import load_principle_set

        assert load_principle_set(out).writer == MODEL
    else:
        assert "mine.raw.txt" in result.stderr and not out.exists()


def _responses(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"POST: my cat number {i} ate my homework.",
                                        "response": t}) + "\n" for i, t in enumerate(texts)))
    return path


@pytest.mark.parametrize("transport", ["auto", "litellm"])
def test_eval_compare_through_vllm(vllm_server: VLLMServer, transport: str, tmp_path: Path) -> None:
    """A real ``sami-kit eval compare`` with the litellm judge on vLLM: the summary's counts and cost match the
    judgments file (usage reported by vLLM at the configured prices), and a rerun is answered from the cache."""
    from click.testing import CliRunner

    from sami_toolkit.cli import cli

    n = 6
    good = _responses(tmp_path / "good.jsonl", ["Final Response: A"] * n)
    bad = _responses(tmp_path / "bad.jsonl", ["Final Response: B"] * n)
    config = tmp_path / "compare.yaml"
    config.write_text(json.dumps({"judge": {"name": "litellm", "options": {
        "model": MODEL, "api_base": vllm_server.api_base, "api_key_env": KEY_ENV, "transport": transport,
        "cache_path": str(tmp_path / "judge.sqlite"), "max_tokens": 20, "max_retries": 1, "retry_backoff": 0,
        "template": ECHO_TEMPLATE, "input_cost_per_token": PRICE_IN, "output_cost_per_token": PRICE_OUT}}}))

    def compare(out: str) -> tuple[Any, dict, list[dict]]:
        result = CliRunner().invoke(cli, [
            "eval", "compare", "--config", str(config), "--candidate", str(good), "--baseline", str(bad),
            "--task", "tldr", "--constitution", "1. Summaries should be brief.", "--bootstrap", "200",
            "--min-items", "2", "--json", "--out-dir", str(tmp_path / out)])
        assert "Traceback" not in result.output
        summary = json.loads(result.stdout[result.stdout.index("{"):])
        rows = [json.loads(x) for x in (tmp_path / out / "judgments.jsonl").read_text().splitlines()]
        return result, summary, rows

    before = vllm_server.successes()
    first, summary, rows = compare("out")
    assert vllm_server.successes() - before == n  # one judge call per item
    assert first.exit_code == summary["gate"]["exit_code"] and first.exit_code in (0, 1, 3), first.output
    assert (summary["n_total"], summary["failures"]) == (n, 0)
    assert summary["wins"] + summary["losses"] + summary["ties"] == n
    assert summary["wins"] == sum(r["outcome"] == 1.0 for r in rows)
    assert summary["judge_cost"] == pytest.approx(sum(r["cost"] for r in rows)) and summary["judge_cost"] > 0
    before = vllm_server.successes()
    second, again, rows2 = compare("out2")
    assert vllm_server.successes() == before, "a rerun with the same cache must not call the server"
    assert second.exit_code == first.exit_code and again["wins"] == summary["wins"]
    assert again["judge_cost"] == 0.0 and all(r["cached"] for r in rows2)
    assert f"{n} of {n} judged item(s) from the cache" in second.stderr


def test_eval_compare_with_a_non_answering_judge_is_exit_4(vllm_server: VLLMServer, tmp_path: Path) -> None:
    """The paper's judge prompt on a 135M model: no verdict parses, so the gate refuses to decide (exit 4)."""
    from click.testing import CliRunner

    from sami_toolkit.cli import cli

    good = _responses(tmp_path / "good.jsonl", [f"The post is about cat {i}." for i in range(3)])
    bad = _responses(tmp_path / "bad.jsonl", ["The post is about a long story."] * 3)
    args = ["eval", "compare", "--candidate", str(good), "--baseline", str(bad), "--task", "tldr",
            "--constitution", "1. Summaries should be brief.", "--judge", "litellm", "--bootstrap", "200",
            "--min-items", "2", "--out-dir", str(tmp_path / "out")]
    for key, value in (("model", MODEL), ("api_base", vllm_server.api_base), ("api_key_env", KEY_ENV),
                       ("max_tokens", 40), ("cache_path", "none")):
        args += ["--judge-option", f"{key}={value}"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 4, result.output
    assert "judge is not working" in result.stderr and "Traceback" not in result.output
