"""Per-principle verdicts (``--per-principle``, issue 18 §4): Holm's adjustment by hand and its family-wise error by
seeded simulation, the per-principle table and the every-principle gate end to end."""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
import pytest
from pydantic import Field

from sami_toolkit.cli import main
from sami_toolkit.core.components import ComponentOptions, Judge
from sami_toolkit.core.records import JudgeItem, Judgment
from sami_toolkit.evaluation.per_principle import principle_table
from sami_toolkit.evaluation.stats.multiple import holm_adjust
from sami_toolkit.text.prompts import PER_PRINCIPLE_CONSTITUTION, per_principle_constitution


class PrincipleJudge(Judge):
    """Prefers the GOOD response, except on the principle containing ``against``, where it prefers the other."""

    name = "principled"

    class Options(ComponentOptions):
        against: str = Field("harmless", description="Principle on which the candidate loses.")

    seen: list[str] = []

    def judge(self, items: Sequence[JudgeItem], *, progress: Any = None) -> list[Judgment]:
        out = []
        for item in items:
            PrincipleJudge.seen.append(item.constitution)
            a, b = "GOOD" in item.response_a, "GOOD" in item.response_b
            single = "one principle only" in item.constitution
            if single and self.options.against in item.constitution:
                a, b = b, a
            verdict = "A" if a and not b else "B" if b and not a else "tie"
            out.append(Judgment(id=item.id, verdict=verdict, raw=f"Final Response: {verdict}"))
        return out


@pytest.fixture
def registry(sami_kit_fakes, sami_kit_register_component, sami_kit_registry):
    sami_kit_register_component(PrincipleJudge)
    return sami_kit_registry


def test_holm_by_hand():
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5]) == [0.5]
    assert holm_adjust([0.001, 0.9]) == pytest.approx([0.002, 0.9])


def test_holm_controls_the_family_wise_error_where_unadjusted_tests_do_not():
    """Seeded: 5 principles, each at its threshold (no principle is better), 1000 simulated gates."""
    rng = np.random.default_rng(0)
    holm_any = raw_any = 0
    for _ in range(1000):
        outcomes = {f"p{k}": list((rng.random(100) < 0.5).astype(float)) for k in range(5)}
        rows = principle_table(outcomes, ties="half", margin=0.0)
        holm_any += any(r["verdict"] == "pass" for r in rows)
        raw_any += any(r["p_pass"] <= 0.025 for r in rows)
    assert holm_any / 1000 <= 0.035  # nominal 2.5% (+ Bernoulli discreteness)
    assert raw_any / 1000 > 0.08  # five unadjusted tests: ~12%


def test_the_prompt_lives_in_prompts():
    text = per_principle_constitution("1. Be concise.")
    assert text.startswith("1. Be concise.") and "one principle only" in text
    assert "{principle}" in PER_PRINCIPLE_CONSTITUTION


def _files(tmp_path, n: int = 60) -> list[str]:
    c, b = tmp_path / "c.jsonl", tmp_path / "b.jsonl"
    c.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q{i}?", "response": f"GOOD {i}"}) + "\n"
                         for i in range(n)))
    b.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q{i}?", "response": f"weak {i}"}) + "\n"
                         for i in range(n)))
    return ["eval", "compare", "--candidate", str(c), "--baseline", str(b), "--constitution",
            "1. Be helpful.\n2. Be harmless.", "--judge", "principled", "--bootstrap", "100"]


def _run(args, capsys, registry):
    with pytest.raises(SystemExit) as exc:
        main(args, registry=registry)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_per_principle_table_and_gates(registry, tmp_path, capsys):
    PrincipleJudge.seen.clear()
    md = tmp_path / "s.md"
    code, out, err = _run([*_files(tmp_path), "--per-principle", "--json", "--markdown", str(md),
                           "--out-dir", str(tmp_path / "o"), "--html", str(tmp_path / "r.html")], capsys, registry)
    assert "<h2>Per-principle verdicts</h2>" in (tmp_path / "r.html").read_text()
    assert code == 0, err  # the overall verdict decides by default
    per = json.loads(out)["per_principle"]
    rows = {r["principle"]: r for r in per["rows"]}
    assert rows["principle 1"]["verdict"] == "pass" and rows["principle 2"]["verdict"] == "fail"
    assert rows["principle 1"]["win_rate"] == 1.0 and rows["principle 2"]["win_rate"] == 0.0
    assert len(PrincipleJudge.seen) == 60 * 3  # overall + one verdict per principle per item
    assert "per-principle verdicts" in err and "| principle 2 | 60 |" in md.read_text()
    record = json.loads((tmp_path / "o" / "judgments.jsonl").read_text().splitlines()[0])
    assert record["principles"] == {"principle 1": 1.0, "principle 2": 0.0}
    code, _, err = _run([*_files(tmp_path), "--per-principle", "--require-all-principles"], capsys, registry)
    assert code == 1 and "principle(s) principle 2 regressed" in err
    code, _, err = _run([*_files(tmp_path), "--per-principle", "--require-all-principles", "--judge-option",
                         "against=nothing"], capsys, registry)
    assert code == 0 and "every principle passed" in err
    code, _, err = _run([*_files(tmp_path), "--require-all-principles"], capsys, registry)
    assert code == 2 and "per_principle" in err
