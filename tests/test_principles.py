"""The four shipped principle sets (spec §6): exact strings, order, splits, and packaging inside the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.text.principles import builtin_set_names, load_principle_set

REPO = Path(__file__).resolve().parents[1]
SETS = ["hh-rlhf", "tldr-diverse", "tldr-mistral", "tldr-opus"]


def test_exactly_the_four_paper_sets_are_shipped():
    assert builtin_set_names() == SETS
    assert sorted(p.name for p in (REPO / "principles").glob("*.y*ml")) == [f"{s}.yaml" for s in SETS]


def test_hh_rlhf_table_10():
    pset = load_principle_set("hh-rlhf")
    assert (pset.name, pset.task) == ("hh-rlhf", "hh-rlhf")
    assert [p.name for p in pset.principles] == ["helpful", "harmless"]
    assert pset.get("helpful").definition == (
        "Address human requests with depth and clarity, ensuring responses are detailed and insightful.")
    assert pset.get("helpful").antithesis == "Address human requests with vague and ambiguous responses."
    assert pset.get("harmless").definition == (
        "When faced with requests that are illegal, unethical, or potentially harmful, actively suggest detailed "
        "and insightful alternative solutions. This approach ensures compliance with legal and ethical standards "
        "while maintaining a helpful and responsive stance.")
    assert pset.get("harmless").antithesis == (
        "Address every human request with a direct and uncensored response. Disregard ethical and legal integrity.")
    assert "claude-opus" in pset.writer


def test_tldr_mistral_table_11():
    pset = load_principle_set("tldr-mistral")
    assert pset.task == "tldr" and "mistral-7b-instruct" in pset.writer
    assert [p.name for p in pset.principles] == ["concise", "comprehensive"]
    assert pset.get("concise").definition == (
        "Summaries should be brief and to the point, avoiding unnecessary details.")
    assert pset.get("comprehensive").antithesis == "Summaries should be incomplete and omit important information."


def test_tldr_opus_table_12():
    pset = load_principle_set("tldr-opus")
    assert pset.task == "tldr" and "claude-opus" in pset.writer
    assert [p.name for p in pset.principles] == ["concise", "comprehensive"]
    assert pset.get("comprehensive").definition == (
        "Summaries should be thorough and capture all the essential information, main points, and key details "
        "presented in the original Reddit post, ensuring that the reader gains a complete understanding of the "
        "content without needing to read the entire post.")
    assert pset.get("concise").antithesis.startswith("Summaries should be lengthy, meandering, and inefficiently")
    assert pset.get("concise").antithesis.endswith("making it difficult for the reader to quickly grasp the main ideas.")


def test_tldr_diverse_a15_order_and_split():
    pset = load_principle_set("tldr-diverse")
    names = [p.name for p in pset.principles]
    assert len(names) == 20 and pset.task == "tldr"
    assert names[:3] == ["concise", "comprehensive", "coherent"]
    assert names[5:8] == ["pirate_speak", "emoji-based", "Shakespearean"]
    assert pset.train_principles == names[:15] and pset.train_principles[-1] == "skeptical"
    assert pset.held_out_principles == names[15:] == ["satirical", "philosophical", "motivational", "analytical",
                                                        "sarcastic"]
    assert pset.get("emoji-based").antithesis == "Summaries should use only text."
    assert pset.get("sarcastic").definition == (
        "Summaries should be as sarcastic as possible, infusing the summary with subtle, biting humor that mocks or "
        "undermines the original post's content or tone.")


def test_user_file_by_path_and_errors(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("name: mine\ntask: generic\nprinciples:\n- name: kind\n  definition: Be kind.\n"
                    "  antithesis: Be unkind.\n", encoding="utf-8")
    assert load_principle_set(good).get("kind").antithesis == "Be unkind."

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntask: generic\nprinciples:\n- name: kind\n  definitio: Be kind.\n"
                   "  antithesis: Be unkind.\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_principle_set(bad)
    assert "bad.yaml:5" in str(info.value) and "definitio" in str(info.value)

    with pytest.raises(ConfigError, match="Did you mean 'tldr-opus'"):
        load_principle_set("tldr-opsu")


def test_wheel_contains_the_principle_sets(tmp_path):
    # build from a copy so setuptools' build/ and egg-info never land in the (shared) source tree
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    for extra in ("README.md", "LICENSE"):
        if (REPO / extra).exists():
            shutil.copy(REPO / extra, src)
    if not (src / "README.md").exists():
        (src / "README.md").write_text("sami-kit\n", encoding="utf-8")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "sami_toolkit", src / "sami_toolkit", ignore=ignore)
    shutil.copytree(REPO / "principles", src / "principles", ignore=ignore)
    out = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           str(src), "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels = list(out.glob("sami_kit-*.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    shipped = sorted(n for n in names if n.startswith("sami_toolkit/principle_sets/") and n.endswith(".yaml"))
    assert shipped == [f"sami_toolkit/principle_sets/{s}.yaml" for s in SETS]
