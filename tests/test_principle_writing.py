"""Principle writing (spec §5.1): seed prompt, tolerant parsing, saving the set and the raw answer, the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pytest
from click.testing import CliRunner
from pydantic import Field

from sami_toolkit import hookimpl
from sami_toolkit.core.components import ComponentOptions
from sami_toolkit.core.errors import ConfigError
from sami_toolkit.text.principle_writing import (
    PrincipleParseError,
    PromptedWriter,
    check_names,
    parse_principles,
    raw_path_for,
    write_principles,
    writer_prompt,
)
from sami_toolkit.text.principles import load_principle_set

NAMES = ["concise", "comprehensive"]

PLAIN = """Here are the two principles:

1. Concise: Summaries should be brief and to the point, avoiding unnecessary details.
2. Comprehensive: Summaries should be thorough and include all important information
from the original post.

Antitheses:
1. Concise: Summaries should be lengthy and include unnecessary details.
2. Comprehensive: Summaries should be incomplete and omit important information.
"""

MARKDOWN = """**Principles**

1. **Comprehensive:** Summaries should capture every key point.
2. **Concise**: Summaries should use as few words as possible.

### Antitheses

1. **Fragmentary:** Summaries should leave out key points.
2. **Verbose** - Summaries should ramble on.

I hope this helps!
"""

CONTINUED = """1) Concise: Be brief.
2) Comprehensive: Be complete.
3) Antithesis of Concise: Be long-winded.
4) Antithesis of Comprehensive: Be partial.
"""


def test_seed_prompt_is_the_papers_for_two_principles_and_generalises() -> None:
    prompt = writer_prompt("summarize reddit posts", NAMES)
    assert prompt.startswith("I am writing a constitution for how to summarize reddit posts.\n"
                             "The constitution consists of two principles:\n\n1. Concise\n2. Comprehensive\n\n"
                             "Return both principles and a good definition of them so I can use them for aligning "
                             "a super-human model.\nMoreover, using the same format, return two antitheses that I "
                             "can use as a contrastive prompt.\n\nUse the format:\n1. [principle]: Summaries should "
                             "be...")
    three = writer_prompt("answer medical questions", ["accurate", "humble", "no_jargon"])
    assert "three principles" in three and "all three principles" in three and "three antitheses" in three
    assert "3. No jargon" in three and "Responses should be..." in three


def test_parse_plain_answer_joins_wrapped_lines() -> None:
    pset = parse_principles(PLAIN, NAMES, task="summarize reddit posts", writer="m")
    assert [p.name for p in pset.principles] == NAMES
    assert pset.get("comprehensive").definition == ("Summaries should be thorough and include all important "
                                                    "information from the original post.")
    assert pset.get("concise").antithesis == "Summaries should be lengthy and include unnecessary details."
    assert pset.writer == "m" and pset.task == "summarize reddit posts"


def test_parse_markdown_reordered_and_opposite_labels() -> None:
    pset = parse_principles(MARKDOWN, NAMES)
    # definitions are matched by label even when the writer swapped the order
    assert pset.get("concise").definition == "Summaries should use as few words as possible."
    assert pset.get("comprehensive").definition == "Summaries should capture every key point."
    # antitheses labelled with an opposite word fall back to their number/position
    assert pset.get("concise").antithesis == "Summaries should leave out key points."
    assert pset.get("comprehensive").antithesis == "Summaries should ramble on."


def test_parse_continued_numbering_without_header() -> None:
    pset = parse_principles(CONTINUED, NAMES)
    assert pset.get("concise").antithesis == "Be long-winded."
    assert pset.get("comprehensive").antithesis == "Be partial."


def test_parse_keeps_sentences_that_contain_a_colon() -> None:
    answer = ("1. Summaries should be brief: two sentences at most.\n2. Summaries should cover every point.\n\n"
              "Antitheses:\n1. Verbose: Summaries should be long.\n2. Summaries should skip points: be partial.\n")
    pset = parse_principles(answer, NAMES)
    assert pset.get("concise").definition == "Summaries should be brief: two sentences at most."
    assert pset.get("concise").antithesis == "Summaries should be long."
    assert pset.get("comprehensive").antithesis == "Summaries should skip points: be partial."


def test_parse_errors_name_what_is_missing() -> None:
    no_anti = PLAIN.split("Antitheses:")[0]
    with pytest.raises(PrincipleParseError) as info:
        parse_principles(no_anti, NAMES)
    assert "antithesis of 'concise'" in str(info.value) and "antithesis of 'comprehensive'" in str(info.value)
    assert "definition" not in info.value.message
    assert info.value.raw == no_anti and info.value.exit_code == 2
    one_missing = PLAIN.replace("2. Comprehensive: Summaries should be incomplete and omit important information.\n", "")
    with pytest.raises(PrincipleParseError, match="missing antithesis of 'comprehensive'$|missing antithesis of 'comprehensive'"):
        parse_principles(one_missing, NAMES)
    with pytest.raises(PrincipleParseError, match="definition of 'concise'"):
        parse_principles("I cannot help with that.", NAMES)


class CannedWriter(PromptedWriter):
    """Answers every seed prompt with a fixed text (for tests)."""

    name = "canned"

    class Options(ComponentOptions):
        answer: str = Field(PLAIN, description="The answer returned.")
        model: str = Field("canned-model", description="Reported writer model.")

    prompts: list[str] = []

    def complete(self, prompt: str) -> str:
        CannedWriter.prompts.append(prompt)
        return self.options.answer


class CannedPlugin:
    @hookimpl
    def register_principle_writers(self, register: Any) -> None:
        register(CannedWriter)


def test_write_principles_saves_yaml_and_raw(tmp_path: Path) -> None:
    out = tmp_path / "mine.yaml"
    result = write_principles(CannedWriter(), "summarize reddit posts", NAMES, out)
    loaded = load_principle_set(out)
    assert loaded.name == "mine" and loaded.writer == "canned-model"
    assert [(p.name, p.definition, p.antithesis) for p in loaded.principles] == \
        [(p.name, p.definition, p.antithesis) for p in result.principle_set.principles]
    assert raw_path_for(out) == tmp_path / "mine.raw.txt"
    assert (tmp_path / "mine.raw.txt").read_text(encoding="utf-8") == PLAIN
    with pytest.raises(ConfigError, match="already exists"):
        write_principles(CannedWriter(), "x", NAMES, out)
    write_principles(CannedWriter(), "x", NAMES, out, overwrite=True, set_name="renamed")
    assert load_principle_set(out).name == "renamed"


def test_write_principles_keeps_raw_answer_when_parsing_fails(tmp_path: Path) -> None:
    out = tmp_path / "bad.yaml"
    answer = PLAIN.split("Antitheses:")[0]
    with pytest.raises(PrincipleParseError) as info:
        write_principles(CannedWriter(CannedWriter.Options(answer=answer)), "t", NAMES, out)
    assert not out.exists()
    assert (tmp_path / "bad.raw.txt").read_text(encoding="utf-8") == answer
    assert "bad.raw.txt" in str(info.value)


@pytest.mark.parametrize("names, match", [([], "at least one"), (["concise", "concise"], "repeated"),
                                          (["two words"], "letters, digits"), (["1st"], "starting with a letter")])
def test_bad_principle_names(names: Sequence[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_names(names)


def test_cli_write_success_and_parse_failure(tmp_path: Path, sami_kit_register_plugin: Any) -> None:
    from sami_toolkit.cli import cli

    sami_kit_register_plugin(CannedPlugin(), "canned-writer")
    out = tmp_path / "set.yaml"
    runner = CliRunner()
    CannedWriter.prompts.clear()
    result = runner.invoke(cli, ["principles", "write", "--task", "summarize reddit posts", "--principle", "concise",
                                 "--principle", "comprehensive", "--writer", "canned", "-o", "model=my-writer",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert '"writer": "my-writer"' in result.stdout
    assert load_principle_set(out).get("concise").antithesis.startswith("Summaries should be lengthy")
    assert CannedWriter.prompts and "summarize reddit posts" in CannedWriter.prompts[-1]

    bad_out = tmp_path / "bad.yaml"
    result = runner.invoke(cli, ["principles", "write", "--task", "t", "--principle", "concise", "--principle",
                                 "comprehensive", "--writer", "canned", "-o", "answer='1. Concise: be short.'",
                                 "--out", str(bad_out)])
    assert result.exit_code == 2
    assert "missing" in result.stderr and "Traceback" not in result.output
    assert (tmp_path / "bad.raw.txt").read_text(encoding="utf-8") == "1. Concise: be short."

    unknown_option = runner.invoke(cli, ["principles", "write", "--task", "t", "--principle", "a", "--writer",
                                         "canned", "-o", "temprature=0", "--out", str(tmp_path / "x.yaml")])
    assert unknown_option.exit_code == 2 and "temprature" in unknown_option.stderr
    unknown_writer = runner.invoke(cli, ["principles", "write", "--task", "t", "--principle", "a", "--writer",
                                         "cannned", "--out", str(tmp_path / "x.yaml")])
    assert unknown_writer.exit_code == 2 and "canned" in unknown_writer.stderr


def test_hf_writer_generates_greedily_and_keeps_the_raw_answer(tiny_model_dir: Path, tmp_path: Path) -> None:
    from sami_toolkit.plugins.registry import get_component

    writer = get_component("principle-writers", "hf", {"model": str(tiny_model_dir), "max_new_tokens": 12})
    prompt = writer_prompt("summarize reddit posts", NAMES)
    first = writer.complete(prompt)
    assert first and first == writer.complete(prompt)  # greedy: the same answer every time
    out = tmp_path / "tiny.yaml"
    with pytest.raises(PrincipleParseError):  # a random tiny model cannot write principles
        write_principles(writer, "summarize reddit posts", NAMES, out)
    assert (tmp_path / "tiny.raw.txt").read_text(encoding="utf-8") == first
