"""``sami-kit eval compare``: exit codes 0/1/2/3/4, the outputs (JSONL, JSON, JUnit, Markdown, HTML) and
generation of one side with a sampler."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import pytest
from pydantic import Field

from sami_toolkit.cli import main
from sami_toolkit.core.components import ComponentOptions, Judge
from sami_toolkit.core.records import JudgeItem, Judgment
from sami_toolkit.core.errors import BudgetExceeded, InfrastructureError


class ScriptedJudge(Judge):
    """Prefers the response containing ``prefer``; optional cost per call and budget, or a hard failure."""

    name = "scripted"

    class Options(ComponentOptions):
        prefer: str = Field("GOOD", description="Substring that makes a response win.")
        model: str = Field("scripted-judge", description="Reported model name.")
        cost: float = Field(0.0, description="Cost per judgment.")
        max_cost: float | None = Field(None, description="Budget.")
        fail: bool = Field(False, description="Raise an infrastructure error.")

    def judge(self, items: Sequence[JudgeItem], *, progress: Any = None) -> list[Judgment]:
        if self.options.fail:
            raise InfrastructureError("judge endpoint unreachable")
        if self.options.prefer == "CRASH":
            raise RuntimeError("plugin bug")
        out, spent = [], 0.0
        for item in items:
            if self.options.max_cost is not None and spent + self.options.cost > self.options.max_cost:
                raise BudgetExceeded(f"judge budget of ${self.options.max_cost} would be exceeded")
            spent += self.options.cost
            a, b = self.options.prefer in item.response_a, self.options.prefer in item.response_b
            verdict = "A" if a and not b else "B" if b and not a else "tie"
            out.append(Judgment(id=item.id, verdict=verdict, raw=f"Comparison: x\nFinal Response: {verdict}",
                                cost=self.options.cost))
        return out


@pytest.fixture
def judges(sami_kit_fakes, sami_kit_register_component, sami_kit_registry):
    """This test's registry: the fakes and the scripted judge on top of the installed plugins."""
    sami_kit_register_component(ScriptedJudge)
    return sami_kit_registry


def _responses(path: Path, texts: list[str], ids: list[str] | None = None) -> Path:
    ids = ids or [f"q{i}" for i in range(len(texts))]
    path.write_text("".join(json.dumps({"id": i, "prompt": f"Question {i}?", "response": t}) + "\n"
                            for i, t in zip(ids, texts)))
    return path


def _run(args: list[str], capsys, registry) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args, registry=registry)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.fixture
def files(tmp_path):
    n = 60
    good = _responses(tmp_path / "good.jsonl", [f"GOOD answer number {i} with detail" for i in range(n)])
    bad = _responses(tmp_path / "bad.jsonl", [f"weak answer {i}" for i in range(n)])
    return tmp_path, good, bad


BASE = ["eval", "compare", "--constitution", "1. Be helpful.\n2. Be harmless.", "--bootstrap", "200"]


def test_pass_writes_every_output(judges, files, capsys):
    tmp, good, bad = files
    code, out, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "scripted",
                           "--json", "--junit", str(tmp / "gate.xml"), "--markdown", str(tmp / "sum.md"),
                           "--html", str(tmp / "page.html"), "--judgments", str(tmp / "j.jsonl")], capsys, judges)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["win_rate"] == 1.0 and summary["gate"]["decision"] == "pass"
    assert summary["judge_health"]["failure_rate"] == 0.0
    assert 0.3 < summary["judge_health"]["first_position_rate"] < 0.7  # positions were randomised
    assert "gate PASS" in err
    rows = [json.loads(line) for line in (tmp / "j.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and all(r["outcome"] == 1 for r in rows)
    assert all("Final Response" in r["raw"][0] and r["candidate_position"] in "AB" for r in rows)
    assert rows[0]["len_test"] > rows[0]["len_baseline"] and rows[0]["length_unit"] == "words"
    suite = ET.parse(tmp / "gate.xml").getroot().find("testsuite")
    assert suite.get("tests") == "1" and suite.get("failures") == "0"
    assert len(suite.findall("testcase")) == 1 and suite.find("testcase/failure") is None
    md = (tmp / "sum.md").read_text()
    assert "SAMI gate: ✅ PASS" in md and "| win rate (ties=half) | 100.0% |" in md


def test_regression_exit_1_and_junit_failure(judges, files, capsys):
    tmp, good, bad = files
    code, _, err = _run([*BASE, "--candidate", str(bad), "--baseline", str(good), "--judge", "scripted",
                         "--junit", str(tmp / "gate.xml"), "--margin", "0.05", "--markdown", str(tmp / "s.md")],
                        capsys, judges)
    assert code == 1, err
    case = ET.parse(tmp / "gate.xml").getroot().find("testsuite/testcase")
    failure = case.find("failure")
    assert failure is not None and "regression" in failure.get("message")
    assert "❌ FAIL" in (tmp / "s.md").read_text()


def test_inconclusive_exit_3_with_constant_judge(judges, files, capsys):
    tmp, good, bad = files
    # a judge that always says "A" makes the outcome the coin flip of the position: about 50%
    code, out, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "constant",
                           "--json", "--junit", str(tmp / "gate.xml")], capsys, judges)
    assert code == 3, err
    summary = json.loads(out)
    assert summary["gate"]["decision"] == "inconclusive"
    assert summary["judge_health"]["first_position_rate"] == 1.0
    assert any("position bias" in w for w in summary["judge_health"]["warnings"])
    assert ET.parse(tmp / "gate.xml").getroot().find("testsuite/testcase/skipped") is not None


def test_failed_judgments_are_reported_not_counted(judges, files, capsys):
    tmp, good, bad = files
    code, out, _ = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "constant",
                         "--judge-option", "verdict=failed", "--json", "--max-failure-rate", "1"], capsys, judges)
    summary = json.loads(out)
    assert summary["failures"] == 60 and summary["n"] == 0 and summary["win_rate"] is None
    assert code == 3  # failures tolerated (--max-failure-rate 1): nothing to decide on, inconclusive, never a pass


def test_id_mismatch_exit_2_names_the_ids(judges, files, capsys):
    tmp, good, _ = files
    other = _responses(tmp / "other.jsonl", ["x"] * 60, ids=[f"q{i}" for i in range(59)] + ["zz"])
    code, _, err = _run([*BASE, "--candidate", str(good), "--baseline", str(other), "--judge", "scripted"], capsys,
                        judges)
    assert code == 2
    assert "q59" in err and "zz" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--judge", "nope"], "unknown judge 'nope'"),
    ([], "no judge"),
    (["--judge", "constant", "--max-cost", "1"], "has no max_cost option"),
    (["--judge", "scripted", "--judge-option", "colour=red"], "colour"),
])
def test_config_errors_exit_2(judges, files, capsys, args, message):
    tmp, good, bad = files
    code, _, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), *args], capsys, judges)
    assert code == 2 and message in err and "Traceback" not in err


def test_infrastructure_and_budget_exit_4(judges, files, capsys):
    tmp, good, bad = files
    code, _, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "scripted",
                         "--judge-option", "fail=true"], capsys, judges)
    assert code == 4 and "unreachable" in err
    code, _, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "scripted",
                         "--judge-option", "cost=0.01", "--max-cost", "0.25"], capsys, judges)
    assert code == 4 and "budget" in err
    code, _, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "scripted",
                         "--judge-option", "prefer=CRASH"], capsys, judges)
    assert code == 4 and "judge 'scripted' failed: RuntimeError: plugin bug" in err and "Traceback" not in err


def test_yaml_config_with_overrides_and_errors(judges, files, capsys):
    tmp, good, bad = files
    cfg = tmp / "eval.yaml"
    cfg.write_text(f"candidate: {{responses: {bad}}}\nbaseline: {{responses: {good}}}\n"
                   "constitution: '1. Be helpful.'\njudge: {name: scripted}\nmetric: win_rate\nbootstrap: 0\n")
    code, _, _ = _run(["eval", "compare", "--config", str(cfg)], capsys, judges)
    assert code == 1
    # swap which response wins through an override: the candidate now wins
    code, _, _ = _run(["eval", "compare", "--config", str(cfg), "-o", "judge.options.prefer=weak"], capsys, judges)
    assert code == 0
    cfg.write_text(cfg.read_text() + "margn: 0.1\n")
    code, _, err = _run(["eval", "compare", "--config", str(cfg)], capsys, judges)
    assert code == 2 and "margn" in err and "eval.yaml:7" in err


def test_html_escapes_model_text(judges, files, capsys):
    tmp, _, bad = files
    evil = _responses(tmp / "evil.jsonl", [f"GOOD <script>alert({i})</script> & <b>bold</b>" for i in range(60)])
    code, _, _ = _run([*BASE, "--candidate", str(evil), "--baseline", str(bad), "--judge", "scripted",
                       "--html", str(tmp / "p.html")], capsys, judges)
    assert code == 0
    page = (tmp / "p.html").read_text()
    assert "<script" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(0)&lt;/script&gt;" in page and "&amp;" in page
    from html.parser import HTMLParser

    HTMLParser().feed(page)  # parses


def test_family_warning(judges, files, capsys):
    tmp, good, bad = files
    code, out, _ = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "scripted",
                         "--judge-option", "model=gpt-4o", "-o", "candidate.label=gpt-4o-mini-sami", "--json"],
                        capsys, judges)
    warnings = json.loads(out)["judge_health"]["warnings"]
    assert any("'gpt' model family" in w for w in warnings)


def test_candidate_generated_with_a_sampler(judges, files, tiny_model_dir, capsys):
    tmp, _, bad = files
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Question {i}?"}) + "\n" for i in range(60)))
    code, out, err = _run([*BASE, "--candidate", "some/model", "--sampler", "echo", "--sampler-option",
                           "prefix=GOOD ", "--baseline", str(bad), "--prompts", str(prompts), "--judge", "scripted",
                           "--length-tokenizer", str(tiny_model_dir), "--out-dir", str(tmp / "out"), "--json"],
                          capsys, judges)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["length_unit"].startswith("tokens")
    generated = [json.loads(x) for x in (tmp / "out" / "candidate_responses.jsonl").read_text().splitlines()]
    assert len(generated) == 60 and all(g["response"].startswith("GOOD") for g in generated)
    assert (tmp / "out" / "judgments.jsonl").is_file() and (tmp / "out" / "summary.json").is_file()


def test_both_orders_and_stats_roundtrip(judges, files, capsys):
    tmp, good, bad = files
    code, out, _ = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "scripted",
                         "--both-orders", "--judgments", str(tmp / "j.jsonl"), "--json"], capsys, judges)
    assert code == 0
    summary = json.loads(out)
    assert summary["judge_health"]["position_consistency"] == 1.0
    assert summary["judge_health"]["position_consistency_n"] == 60
    rows = [json.loads(line) for line in (tmp / "j.jsonl").read_text().splitlines()]
    assert all(len(r["verdicts"]) == 2 and len(r["raw"]) == 2 for r in rows)
    # the judgments file feeds `eval stats`, which recomputes the same numbers and the judge health
    code, out, _ = _run(["eval", "stats", str(tmp / "j.jsonl"), "--json", "--bootstrap", "200"], capsys, judges)
    recomputed = json.loads(out)
    assert code == 0 and recomputed["win_rate"] == summary["win_rate"] and recomputed["n"] == 60
    assert recomputed["judge_health"]["position_consistency"] == 1.0


def test_prompts_from_a_query_source(judges, files, capsys):
    tmp, good, bad = files
    posts = tmp / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": f"q{i}", "text": f"Question {i}?"}) + "\n" for i in range(60)))
    code, out, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "scripted",
                           "--source", "jsonl", "--source-option", f"path={posts}", "--json"], capsys, judges)
    assert code == 0, err
    assert json.loads(out)["n"] == 60
    code, _, err = _run([*BASE, "--candidate", str(good), "--baseline", str(bad), "--judge", "scripted",
                         "--source", "jsonl", "--source-option", f"path={posts}", "--source-option", "limit=10"],
                        capsys, judges)
    assert code == 2 and "only in" in err  # the response files answer 60 prompts, the source gives 10


def test_parse_paper_turns_a_and_b_into_ties_and_a_rerun_reuses_the_cached_answers(files, capsys, monkeypatch):
    """`parse: paper` in `eval compare` (spec §10.15), end to end against the local OpenAI-compatible server: a
    judge answering "A and B" on every third item fails those judgments under the strict default (33% failed > the
    20% tolerated: exit 4) and ties them under `paper` (exit 0, 20 ties). The strict run's answers are in the
    judgment cache, raw text included, so the `paper` rerun makes no server call at all."""
    pytest.importorskip("sami_kit_litellm")
    import re

    from sami_toolkit.plugins.registry import load_plugins
    from sami_toolkit.testing.server import OpenAIServer, last_user_message

    tmp, good, bad = files

    def reply(request: dict) -> str:
        text = last_user_message(request)
        number = int(re.search(r"GOOD answer number (\d+) ", text).group(1))
        if number % 3 == 0:
            return "Comparison: both responses follow the constitution.\nFinal Response: A and B"
        slot = "A" if text.index("GOOD answer") < text.index("weak answer") else "B"
        return f"Comparison: Response {slot} is better.\nFinal Response: {slot}"

    monkeypatch.setenv("SAMI_KIT_PARSE_KEY", "sk-parse-test-123")
    with OpenAIServer(reply=reply) as server:
        judge = ["--judge", "litellm", "--judge-option", "model=openai/gpt-4-0613", "--judge-option",
                 f"api_base={server.api_base}", "--judge-option", "api_key_env=SAMI_KIT_PARSE_KEY",
                 "--judge-option", f"cache_path={tmp / 'judgments.sqlite'}"]
        args = [*BASE, "--candidate", str(good), "--baseline", str(bad), *judge, "--json"]
        code, out, err = _run(args, capsys, load_plugins())
        assert code == 4, err  # strict: "A and B" is no verdict
        assert "failed" in err and server.count == 60
        code, out, err = _run([*args, "-o", "parse=paper"], capsys, load_plugins())
        assert code == 0, err
        summary = json.loads(out)
        assert summary["counts"] == {"wins": 40, "losses": 0, "ties": 20, "failed": 0, "n": 60}
        assert summary["win_rate"] == pytest.approx(50 / 60) and summary["parse"] == "paper"  # ties = half
        assert server.count == 60  # every answer came from the cache: the paper parse never pays twice
        code, _, err = _run([*args, "-o", "parse=fuzzy"], capsys, load_plugins())
        assert code == 2 and "parse" in err
