"""``sami-kit eval history`` (issue 18 §5): the table, the SVG chart, the significant steps (false-flag rate by
seeded simulation) and the Bradley–Terry ranking with bootstrap intervals, end to end from eval compare outputs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any, Sequence

import numpy as np
import pytest

from sami_toolkit.cli import main
from sami_toolkit.core.components import Judge
from sami_toolkit.core.records import JudgeItem, Judgment
from sami_toolkit.evaluation.history import Checkpoint, step_changes
from sami_toolkit.evaluation.stats.bradley_terry import fit_bradley_terry, rank_against_baseline


class GoodJudge(Judge):
    name = "good"

    def judge(self, items: Sequence[JudgeItem], *, progress: Any = None) -> list[Judgment]:
        out = []
        for item in items:
            a, b = "GOOD" in item.response_a, "GOOD" in item.response_b
            verdict = "A" if a and not b else "B" if b and not a else "tie"
            out.append(Judgment(id=item.id, verdict=verdict, raw=f"Final Response: {verdict}"))
        return out


@pytest.fixture
def registry(sami_kit_fakes, sami_kit_register_component, sami_kit_registry):
    sami_kit_register_component(GoodJudge)
    return sami_kit_registry


def _run(args, capsys, registry):
    with pytest.raises(SystemExit) as exc:
        main(args, registry=registry)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_bradley_terry_recovers_known_strengths():
    # player 1 beats player 0 three times in four, player 2 one time in four: log-strengths ±log 3
    wins = np.array([[0, 25, 75], [75, 0, 0], [25, 0, 0]], dtype=float)
    s = fit_bradley_terry(wins, eps=0.0)
    assert s[1] == pytest.approx(np.log(3), abs=1e-6) and s[2] == pytest.approx(-np.log(3), abs=1e-6)


def test_closed_form_ranking_matches_the_general_fit():
    data = {"x": [1.0] * 30 + [0.0] * 10, "y": [1.0] * 12 + [0.5] * 6 + [0.0] * 22}
    ranking = {r.name: r.log_strength for r in rank_against_baseline(data, bootstrap=0)}
    wins = np.array([[0, 10, 25], [30, 0, 0], [15, 0, 0]], dtype=float)  # a tie is half a win each way
    general = fit_bradley_terry(wins)
    assert ranking["x"] == pytest.approx(general[1], abs=1e-6) and ranking["y"] == pytest.approx(general[2], abs=1e-6)


def test_ranking_intervals_cover_and_order():
    """Seeded: three candidates at true win rates 0.35 / 0.5 / 0.7 against one baseline, 40 replications; the
    95% interval of each log-strength covers the truth in most of them and the point ranking is right."""
    truth = {"a": 0.35, "b": 0.5, "c": 0.7}
    covered = right = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        data = {k: list((rng.random(150) < p).astype(float)) for k, p in truth.items()}
        ranking = rank_against_baseline(data, bootstrap=200, seed=seed)
        right += [r.name for r in ranking] == ["c", "b", "a"]
        covered += sum(r.ci_low <= np.log(truth[r.name] / (1 - truth[r.name])) <= r.ci_high for r in ranking)
    assert right >= 36 and covered / 120 >= 0.88


def test_step_flags_are_rare_without_a_change():
    """Seeded: two checkpoints judged on the same 200 prompts with the same true rate; the paired step test
    flags about 5% of the runs (and a 15-point jump in most of them)."""
    flags = jumps = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        difficulty = rng.random(200)
        first = (rng.random(200) < 0.3 + 0.4 * difficulty).astype(float)
        same = (rng.random(200) < 0.3 + 0.4 * difficulty).astype(float)
        better = (rng.random(200) < 0.45 + 0.4 * difficulty).astype(float)
        ids = [str(i) for i in range(200)]

        def cp(label: str, x: Any) -> Checkpoint:
            m = float(x.mean())
            se = (m * (1 - m) / 200) ** 0.5
            return Checkpoint(label=label, baseline="b", source="", n=200, outcomes=dict(zip(ids, x)),
                              metrics={"win_rate": (m, m - 1.96 * se, m + 1.96 * se)})

        flags += step_changes([cp("1", first), cp("2", same)])[0]["significant"]
        jumps += step_changes([cp("1", first), cp("2", better)])[0]["significant"]
    assert flags / 200 <= 0.09 and jumps / 200 >= 0.8


def test_history_end_to_end(registry, tmp_path, capsys):
    n = 80
    base = tmp_path / "base.jsonl"
    base.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q{i}?", "response": f"weak {i}"}) + "\n"
                            for i in range(n)))
    dirs = []
    for k, share in enumerate((0.3, 0.45, 0.85), start=1):
        cand = tmp_path / f"ckpt{k}.jsonl"
        cand.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q{i}?",
                                            "response": ("GOOD " if (i * 37 % 100) < share * 100 else "poor ") + str(i)})
                                + "\n" for i in range(n)))
        out = tmp_path / f"gate{k}"
        _run(["eval", "compare", "--candidate", str(cand), "--baseline", str(base), "--constitution", "1. Be kind.",
              "--judge", "good", "--bootstrap", "100", "--out-dir", str(out), "-o", f"candidate.label=ckpt-{k}"],
             capsys, registry)
        dirs.append(str(out))
    svg, md = tmp_path / "h.svg", tmp_path / "h.md"
    code, out, err = _run(["eval", "history", *dirs, "--svg", str(svg), "--markdown", str(md), "--json",
                           "--bootstrap", "200"], capsys, registry)
    assert code == 0, err
    data = json.loads(out)
    assert [c["label"] for c in data["checkpoints"]] == ["ckpt-1", "ckpt-2", "ckpt-3"]
    steps = {(s["to"], s["metric"]): s for s in data["steps"]}
    assert steps[("ckpt-3", "win_rate")]["significant"] and steps[("ckpt-3", "win_rate")]["direction"] == "up"
    assert "paired" in steps[("ckpt-3", "win_rate")]["method"]
    ranking = data["rankings"][base.name]
    assert [r["name"] for r in ranking] == ["ckpt-3", "ckpt-2", "ckpt-1"] and ranking[0]["rank_high"] == 1
    root = ET.parse(svg).getroot()  # a well-formed SVG document
    assert root.tag.endswith("svg") and "win_rate" in svg.read_text() and "significant step at #3" in svg.read_text()
    text = md.read_text()
    assert "| 3 | ckpt-3 |" in text and "▲" in text and "Bradley–Terry ranking" in text
    assert "checkpoint history" in err


def test_history_bad_input_is_exit_2(registry, tmp_path, capsys):
    code, _, err = _run(["eval", "history", str(tmp_path / "missing")], capsys, registry)
    assert code == 2 and "no such file" in err
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    code, _, err = _run(["eval", "history", str(bad)], capsys, registry)
    assert code == 2 and "not an eval compare summary" in err and "Traceback" not in err


def test_history_of_a_run_directory(registry, tmp_path, capsys):
    run = tmp_path / "run"
    for t, (rate, n) in enumerate([(0.5, 0), (0.55, 250), (0.75, 250)]):
        d = run / "iterations" / str(t)
        d.mkdir(parents=True)
        se = (rate * (1 - rate) / max(n, 1)) ** 0.5
        metrics = {"win_rate_vs_base": rate, "win_rate_vs_base_ci_low": rate - 1.96 * se,
                   "win_rate_vs_base_ci_high": rate + 1.96 * se, "win_rate_vs_base_n": n}
        if t == 0:
            metrics = {"win_rate_vs_base": 0.5, "win_rate_vs_base_sem": 0.0,
                       "win_rate_vs_base_note": "model is the comparator"}
        (d / "metrics.json").write_text(json.dumps(metrics))
    code, out, err = _run(["eval", "history", str(run), "--json"], capsys, registry)
    assert code == 0, err
    data = json.loads(out)
    assert [c["label"] for c in data["checkpoints"]] == ["run/t1", "run/t2"]  # t0 is the comparator itself
    (step,) = data["steps"]
    assert step["significant"] and step["method"] == "CIs (independent)" and step["direction"] == "up"
