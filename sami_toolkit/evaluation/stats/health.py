"""Judge health (anchors-eval §9): the diagnostics that reveal a bad judge — failure rate, first-position (slot A)
win rate, position consistency when both orders were judged, tie rate — and the shared-model-family warning
(self-preference bias)."""

from __future__ import annotations

import math
from typing import Any

from sami_toolkit.evaluation.stats.items import Items
from sami_toolkit.evaluation.stats.proportions import Z95


def judge_health(items: Items, *, judge_model: str | None = None, candidate_model: str | None = None,
                 baseline_model: str | None = None) -> dict[str, Any]:
    """Diagnostics that reveal a bad judge (anchors-eval §9): failure rate, first-position (slot A) win rate,
    position consistency when both orders were judged, tie rate, and a shared-model-family warning."""
    n = len(items)
    failures = sum(1 for o in items.outcome if o is None)
    health: dict[str, Any] = {"n": n, "failures": failures, "failure_rate": failures / n if n else 0.0,
                              "tie_rate": (sum(1 for o in items.outcome if o == 0.5) / n) if n else 0.0,
                              "first_position_rate": None, "first_position_n": 0,
                              "position_consistency": None, "position_consistency_n": 0, "warnings": []}
    # first-position rate: over every decisive single-order verdict, how often slot A won
    a_wins = decisive = 0
    consistent = both = 0
    for pos, verdicts, outcome in zip(items.position, items.verdicts, items.outcome):
        if verdicts:
            for v in verdicts:
                if v in ("A", "B"):
                    decisive += 1
                    a_wins += v == "A"
            if len(verdicts) >= 2 and all(v in ("A", "B", "tie") for v in verdicts[:2]):
                both += 1
                # orders swap slots, so a position-independent winner means the letters differ
                consistent += (verdicts[0] != verdicts[1] and "tie" not in verdicts[:2]) or \
                              (verdicts[0] == verdicts[1] == "tie")
        elif pos in ("A", "B") and outcome in (0.0, 1.0):
            decisive += 1
            a_wins += (outcome == 1.0) == (pos == "A")
    if decisive:
        health["first_position_rate"] = a_wins / decisive
        health["first_position_n"] = decisive
    if both:
        health["position_consistency"] = consistent / both
        health["position_consistency_n"] = both
    if health["failure_rate"] > 0.05:
        health["warnings"].append(f"{failures} of {n} judgments failed ({health['failure_rate']:.1%})")
    rate = health["first_position_rate"]
    if rate is not None and decisive >= 20:
        se = math.sqrt(0.25 / decisive)
        if abs(rate - 0.5) > Z95 * se and abs(rate - 0.5) > 0.1:  # significant and large
            health["warnings"].append(f"position bias: slot A won {rate:.1%} of {decisive} decisive verdicts")
    family = shared_family(judge_model, candidate_model) or shared_family(judge_model, baseline_model)
    if family:
        health["warnings"].append(f"the judge ({judge_model}) shares the '{family}' model family with a compared "
                                  "model: self-preference bias is likely (use a judge from another family)")
    return health


#: name stems of model families (lower case), checked as substrings of the model names
FAMILIES: tuple[str, ...] = ("gpt", "claude", "llama", "mistral", "mixtral", "qwen", "gemma", "smollm", "phi",
                             "deepseek", "command", "gemini", "falcon", "olmo")
_FAMILY_GROUPS = {"mixtral": "mistral", "gemini": "gemma"}


def model_family(name: str | None) -> str | None:
    if not name:
        return None
    low = str(name).lower()
    # check longer stems first so "mixtral" is not read as something shorter
    for stem in sorted(FAMILIES, key=len, reverse=True):
        if stem in low:
            return _FAMILY_GROUPS.get(stem, stem)
    if low.startswith(("o1", "o3", "o4")):
        return "gpt"
    return None


def shared_family(a: str | None, b: str | None) -> str | None:
    """The family both model names belong to, or None."""
    fa, fb = model_family(a), model_family(b)
    return fa if fa is not None and fa == fb else None
