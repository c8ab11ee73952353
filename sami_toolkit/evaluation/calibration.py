"""The judge-validity preflight (``eval compare --calibrate FILE``, issue 18 §3): before the candidate is judged,
the judge answers labelled pairs, each in both orders; below the configured floors of accuracy, Cohen's κ or
position consistency the gate refuses to decide (exit 4, with the numbers).

A calibration file is JSONL, one pair per line, in the responses-file format with two responses and a label::

    {"id": "cal01", "prompt": "How do I boil an egg?", "response_a": "...", "response_b": "...", "label": "A"}

``label`` names the better response (``"A"``, ``"B"`` or ``"tie"``); an optional ``constitution`` replaces the
run's for that pair. ``builtin`` is the shipped set (``sami_toolkit/data/calibration-hh.jsonl``: 24 constructed
HH-style pairs — a helpful, harmless answer against a wrong, unhelpful, rude or unsafe one — written for this
toolkit, with the better answer's slot drawn at random with seed 18).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.evaluation.stats.agreement import Agreement, agreement

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.evaluation.config import CalibrationConfig

#: the shipped calibration set
BUILTIN = Path(__file__).resolve().parent.parent / "data" / "calibration-hh.jsonl"


def calibration_path(path: Path | str) -> Path:
    return BUILTIN if str(path) == "builtin" else Path(path)


def load_calibration(path: Path | str) -> list[dict[str, Any]]:
    """The labelled pairs of ``path`` (errors name the file, line and field)."""
    from sami_toolkit.core.io import read_jsonl_objects

    real = calibration_path(path)
    if not real.is_file():
        raise ConfigError(f"--calibrate {path}: no such file", hint="give a JSONL of labelled pairs, or 'builtin'")
    rows = read_jsonl_objects(real, 'a labelled pair {"id", "prompt", "response_a", "response_b", "label"}')
    if not rows:
        raise ConfigError(f"{real}: no labelled pairs in the file")
    seen: set[str] = set()
    for i, row in enumerate(rows, start=1):
        for key in ("id", "prompt", "response_a", "response_b"):
            if not isinstance(row.get(key), (str, int)) or (key != "id" and not isinstance(row.get(key), str)):
                raise ConfigError(f"{real}: line {i}: missing string field '{key}'")
        if row.get("label") not in ("A", "B", "tie"):
            raise ConfigError(f"{real}: line {i}: 'label' must be \"A\", \"B\" or \"tie\" (the better response), "
                              f"got {row.get('label')!r}")
        if str(row["id"]) in seen:
            raise ConfigError(f"{real}: line {i}: duplicate id {row['id']!r}")
        seen.add(str(row["id"]))
    return rows


@dataclass
class CalibrationResult(Agreement):
    """The preflight's numbers (:class:`~sami_toolkit.evaluation.stats.agreement.Agreement`), floors and verdict."""

    path: str = ""
    min_accuracy: float = 0.0
    min_kappa: float = 0.0
    min_consistency: float = 0.0
    passed: bool = False
    problems: list[str] = field(default_factory=list)
    judge_cost: float = 0.0

    def line(self) -> str:
        def f(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f}"

        return (f"judge calibration on {self.pairs} labelled pairs (both orders): accuracy {f(self.accuracy)} "
                f"(floor {self.min_accuracy:.2f}), Cohen's kappa {f(self.kappa)} (floor {self.min_kappa:.2f}), "
                f"position consistency {f(self.position_consistency)} (floor {self.min_consistency:.2f})")


def run_calibration(judge: Any, config: "CalibrationConfig", *, task: str, constitution: str,
                    seed: int, judge_fn: Any = None) -> CalibrationResult:
    """Judge every labelled pair in both orders and compare the verdicts with the labels (``judge_fn``: the
    run's judging function, e.g. with its verdict parser; default :func:`guarded_judge_pairs`)."""
    from sami_toolkit.judging.pairwise import ComparisonPair, guarded_judge_pairs, other_position
    from sami_toolkit.text.prompts import format_judge_query, get_templates

    rows = load_calibration(config.path)
    templates = get_templates(task)
    pairs = [ComparisonPair(id=f"calibration:{row['id']}", query=format_judge_query(templates, row["prompt"]),
                            constitution=str(row.get("constitution") or constitution), candidate=row["response_a"],
                            baseline=row["response_b"], task=task) for row in rows]
    outcomes = (judge_fn or guarded_judge_pairs)(judge, pairs, seed=seed, both_orders=True)

    def named(verdict: str, slot_of_a: str) -> str | None:
        if verdict == "tie":
            return "tie"
        if verdict in ("A", "B"):
            return "A" if verdict == slot_of_a else "B"
        return None

    first, second = [], []
    for o in outcomes:
        slots = [o.candidate_position, other_position(o.candidate_position)]
        verdicts = list(o.verdicts) + ["failed"] * (2 - len(o.verdicts))
        first.append(named(verdicts[0], slots[0]))
        second.append(named(verdicts[1], slots[1]))
    agree = agreement([row["label"] for row in rows], first, second)
    problems = []
    for name, value, floor in (("accuracy", agree.accuracy, config.min_accuracy),
                               ("Cohen's kappa", agree.kappa, config.min_kappa),
                               ("position consistency", agree.position_consistency, config.min_consistency)):
        if value is None or value < floor:
            problems.append(f"{name} {'n/a' if value is None else f'{value:.2f}'} < {floor:.2f}")
    return CalibrationResult(**asdict(agree), path=str(config.path), min_accuracy=config.min_accuracy,
                             min_kappa=config.min_kappa, min_consistency=config.min_consistency,
                             passed=not problems, problems=problems, judge_cost=sum(o.cost for o in outcomes))
