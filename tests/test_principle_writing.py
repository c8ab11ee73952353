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
    WriterOutputError,
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
        write_principles(CannedWriter(), "tldr", NAMES, out)
    write_principles(CannedWriter(), "tldr", NAMES, out, overwrite=True, set_name="renamed")
    assert load_principle_set(out).name == "renamed"


def test_write_principles_keeps_raw_answer_when_parsing_fails(tmp_path: Path) -> None:
    out = tmp_path / "bad.yaml"
    answer = PLAIN.split("Antitheses:")[0]
    with pytest.raises(WriterOutputError) as info:  # every attempt unusable: the writer failed (exit 4)
        write_principles(CannedWriter(CannedWriter.Options(answer=answer)), "tldr", NAMES, out)
    assert not out.exists()
    assert (tmp_path / "bad.raw.txt").read_text(encoding="utf-8") == answer
    assert "bad.raw.txt" in str(info.value)


@pytest.mark.parametrize("names, match", [([], "at least one"), (["concise", "concise"], "repeated"),
                                          (["two words"], "letters, digits"), (["1st"], "starting with a letter")])
def test_bad_principle_names(names: Sequence[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_names(names)


def test_cli_write_success_and_parse_failure(tmp_path: Path, sami_kit_register_plugin: Any,
                                             sami_kit_registry: Any) -> None:
    from sami_toolkit.cli import cli

    sami_kit_register_plugin(CannedPlugin(), "canned-writer")
    out = tmp_path / "set.yaml"
    runner = CliRunner()
    CannedWriter.prompts.clear()
    result = runner.invoke(cli, ["principles", "write", "--task", "summarize reddit posts", "--principle", "concise",
                                 "--principle", "comprehensive", "--writer", "canned", "-o", "model=my-writer",
                                 "--out", str(out), "--json"], obj=sami_kit_registry)
    assert result.exit_code == 0, result.output
    assert '"writer": "my-writer"' in result.stdout
    assert load_principle_set(out).get("concise").antithesis.startswith("Summaries should be lengthy")
    assert CannedWriter.prompts and "summarize reddit posts" in CannedWriter.prompts[-1]

    bad_out = tmp_path / "bad.yaml"
    result = runner.invoke(cli, ["principles", "write", "--task", "tldr", "--principle", "concise", "--principle",
                                 "comprehensive", "--writer", "canned", "-o", "answer='1. Concise: be short.'",
                                 "--out", str(bad_out)], obj=sami_kit_registry)
    assert result.exit_code == 4
    assert "missing" in result.stderr and "Traceback" not in result.output
    assert (tmp_path / "bad.raw.txt").read_text(encoding="utf-8") == "1. Concise: be short."

    unknown_option = runner.invoke(cli, ["principles", "write", "--task", "t", "--principle", "a", "--writer",
                                         "canned", "-o", "temprature=0", "--out", str(tmp_path / "x.yaml")],
                                   obj=sami_kit_registry)
    assert unknown_option.exit_code == 2 and "temprature" in unknown_option.stderr
    unknown_writer = runner.invoke(cli, ["principles", "write", "--task", "t", "--principle", "a", "--writer",
                                         "cannned", "--out", str(tmp_path / "x.yaml")], obj=sami_kit_registry)
    assert unknown_writer.exit_code == 2 and "canned" in unknown_writer.stderr


def test_hf_writer_generates_greedily_and_keeps_the_raw_answer(tiny_model_dir: Path, tmp_path: Path) -> None:
    from sami_toolkit import get_component

    writer = get_component("principle-writers", "hf", {"model": str(tiny_model_dir), "max_new_tokens": 12,
                                                        "attempts": 1})
    prompt = writer_prompt("summarize reddit posts", NAMES)
    first = writer.complete(prompt)
    assert first and first == writer.complete(prompt)  # greedy: the same answer every time
    out = tmp_path / "tiny.yaml"
    with pytest.raises(WriterOutputError):  # a random tiny model cannot write principles
        write_principles(writer, "summarize reddit posts", NAMES, out)
    assert (tmp_path / "tiny.raw.txt").read_text(encoding="utf-8") == first


# --- issue 14 §6: the writer validates its output, retries with the problem named, then fails with exit 4 -------
class ScriptedWriter(PromptedWriter):
    """Answers with the next of ``answers`` (the last one repeats); records every prompt."""

    name = "scripted"

    class Options(ComponentOptions):
        answers: list[str] = Field(default_factory=lambda: [PLAIN], description="Answers, in order.")
        attempts: int = Field(2, ge=1, description="Answers to ask for.")

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.prompts: list[str] = []

    def complete(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.options.answers[min(len(self.prompts), len(self.options.answers)) - 1]


SAME = PLAIN.replace("Summaries should be lengthy and include unnecessary details.",
                     "Summaries should be brief and to the point, avoiding unnecessary details.")
EMPTY_ANTI = PLAIN.replace("1. Concise: Summaries should be lengthy and include unnecessary details.", "1. Concise:")
ONE_PRINCIPLE = ("1. Concise: Summaries should be brief.\n\nAntitheses:\n1. Concise: Summaries should be long.\n")


def test_antithesis_equal_to_its_definition_is_rejected() -> None:
    with pytest.raises(PrincipleParseError) as info:
        parse_principles(SAME, NAMES)
    assert "the antithesis of 'concise' repeats its definition" in info.value.message
    assert info.value.problems == ["the antithesis of 'concise' repeats its definition"]
    # case and punctuation do not make two texts different
    shouted = PLAIN.replace("Summaries should be lengthy and include unnecessary details.",
                            "SUMMARIES SHOULD BE BRIEF AND TO THE POINT -- AVOIDING UNNECESSARY DETAILS!")
    with pytest.raises(PrincipleParseError, match="repeats its definition"):
        parse_principles(shouted, NAMES)
    # nor may one principle's text repeat another's
    twin = PLAIN.replace("Summaries should be incomplete and omit important information.",
                         "Summaries should be lengthy and include unnecessary details.")
    with pytest.raises(PrincipleParseError, match="the antithesis of 'comprehensive' repeats the antithesis of "
                                                  "'concise'"):
        parse_principles(twin, NAMES)


def test_empty_antithesis_and_copied_placeholder_are_rejected() -> None:
    with pytest.raises(PrincipleParseError, match=r"missing antithesis of 'concise' \(empty\)"):
        parse_principles(EMPTY_ANTI, NAMES)
    echoed = "1. [principle]: Summaries should be...\n2. Comprehensive: Be complete.\n\nAntitheses:\n" \
             "1. Concise: Be long.\n2. Comprehensive: Be partial.\n"
    with pytest.raises(PrincipleParseError, match="the definition of 'concise' is the format's placeholder"):
        parse_principles(echoed, NAMES)


def test_missing_principle_is_rejected() -> None:
    with pytest.raises(PrincipleParseError) as info:
        parse_principles(ONE_PRINCIPLE, NAMES)
    assert info.value.problems == ["missing definition of 'comprehensive'", "missing antithesis of 'comprehensive'"]


def test_unknown_task_is_a_config_error_before_the_writer_is_asked(tmp_path: Path) -> None:
    writer = ScriptedWriter()
    with pytest.raises(ConfigError) as info:
        write_principles(writer, "tldrr", NAMES, tmp_path / "x.yaml")
    assert info.value.exit_code == 2
    assert "unknown task 'tldrr'" in info.value.message and "Did you mean 'tldr'?" in info.value.message
    assert "Known tasks: tldr, hh-rlhf" in info.value.message and "describe the task" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="template for any task"):
        write_principles(writer, "generic", NAMES, tmp_path / "x.yaml")
    assert writer.prompts == [] and not list(tmp_path.iterdir())


def test_known_task_name_is_described_in_words_and_kept_canonical(tmp_path: Path) -> None:
    writer = ScriptedWriter()
    result = write_principles(writer, "TL;DR", NAMES, tmp_path / "t.yaml")
    assert writer.prompts[0].startswith("I am writing a constitution for how to summarize reddit posts.\n")
    assert result.principle_set.task == "tldr" and load_principle_set(tmp_path / "t.yaml").task == "tldr"
    words = write_principles(writer, "answer medical questions", NAMES, tmp_path / "m.yaml")
    assert words.principle_set.task == "answer medical questions"  # a description in words stays free-form


def test_retry_succeeds_on_the_second_answer_and_every_answer_is_saved(tmp_path: Path) -> None:
    writer = ScriptedWriter(ScriptedWriter.Options(answers=[SAME, PLAIN]))
    out = tmp_path / "mine.yaml"
    result = write_principles(writer, "tldr", NAMES, out)
    assert len(writer.prompts) == 2
    assert writer.prompts[1].startswith(writer.prompts[0])  # the seed prompt again, then what was wrong
    assert "Your previous answer could not be used: the antithesis of 'concise' repeats its definition." \
        in writer.prompts[1]
    assert result.raw == PLAIN and load_principle_set(out).get("concise").antithesis.startswith("Summaries should be "
                                                                                                 "lengthy")
    assert raw_path_for(out).read_text(encoding="utf-8") == PLAIN  # the answer the set was made from
    assert raw_path_for(out, 1) == tmp_path / "mine.attempt-1.raw.txt"
    assert raw_path_for(out, 1).read_text(encoding="utf-8") == SAME  # the rejected one, kept
    # a later run that succeeds at once leaves no stale rejects behind
    write_principles(ScriptedWriter(), "tldr", NAMES, out, overwrite=True)
    assert not raw_path_for(out, 1).exists()


def test_no_usable_answer_fails_with_exit_4_and_saves_every_answer(tmp_path: Path) -> None:
    writer = ScriptedWriter(ScriptedWriter.Options(answers=[SAME, EMPTY_ANTI, ONE_PRINCIPLE], attempts=3))
    out = tmp_path / "bad.yaml"
    with pytest.raises(WriterOutputError) as info:
        write_principles(writer, "tldr", NAMES, out)
    assert info.value.exit_code == 4 and len(writer.prompts) == 3
    assert "gave no usable answer in 3 attempts" in info.value.message
    assert "missing definition of 'comprehensive'" in info.value.message  # the last problem
    for path in (raw_path_for(out), raw_path_for(out, 1), raw_path_for(out, 2)):
        assert str(path) in info.value.message
    assert [raw_path_for(out, n).read_text(encoding="utf-8") for n in (1, 2)] == [SAME, EMPTY_ANTI]
    assert raw_path_for(out).read_text(encoding="utf-8") == ONE_PRINCIPLE
    assert info.value.raws == [SAME, EMPTY_ANTI, ONE_PRINCIPLE] and not out.exists()
    assert "empty" in writer.prompts[2]  # the third prompt names the second answer's problem


def test_a_writer_of_its_own_kind_is_validated_too(tmp_path: Path) -> None:
    from sami_toolkit.testing import FixedPrincipleWriter

    same = FixedPrincipleWriter(FixedPrincipleWriter.Options(definition="Be {name}.", antithesis="Be {name}."))
    with pytest.raises(WriterOutputError, match="the antithesis of 'concise' repeats its definition") as info:
        write_principles(same, "tldr", NAMES, tmp_path / "f.yaml")
    assert "f.raw.txt" in info.value.message and not (tmp_path / "f.yaml").exists()
    good = write_principles(FixedPrincipleWriter(), "hh", NAMES, tmp_path / "g.yaml")
    assert good.principle_set.task == "hh-rlhf"
