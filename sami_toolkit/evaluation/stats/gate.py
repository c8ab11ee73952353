"""The CI gate (design §6, anchors-eval §8.6): a non-inferiority decision on one metric's 95% CI — pass, fail
(regression), inconclusive, or error — with the exit code ``eval compare`` ends with.

The gate decides only on evidence (issue 14 §1). In order:

1. more than ``max_failure_rate`` of the judgments failed → **error** (exit 4): the judge is broken or
   unreachable, and the few verdicts that came back are not a sample of the prompt set;
2. fewer than ``min_items`` scored items → **inconclusive**, whatever the CI says (docs/ci-gate.md, "Minimum
   sample size": below 20 the normal intervals under-cover and the two-parameter length GLMs are not identified);
3. no CI, or a (near) zero-width one → **inconclusive**: a degenerate estimate is not evidence;
4. CI lower bound **strictly** above ``0.5 − margin`` → **pass** (with ``margin 0``, "demonstrably better" excludes
   equality: two identical inputs never pass); CI upper bound below it → **fail**; otherwise inconclusive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.evaluation.stats.proportions import Z95
from sami_toolkit.evaluation.stats.win_rates import WinRateStats

Decision = Literal["pass", "fail", "inconclusive", "error"]

#: fewest scored items the gate decides on (see docs/ci-gate.md, "Minimum sample size", for the arithmetic)
DEFAULT_MIN_ITEMS = 20
#: largest fraction of failed judgments the gate tolerates; above it the run is an infrastructure error (exit 4)
DEFAULT_MAX_FAILURE_RATE = 0.2


@dataclass
class GateResult:
    """The CI gate on one metric (design §6): pass if CI low > 0.5 − margin, fail if CI high < 0.5 − margin."""

    metric: str
    margin: float
    threshold: float
    value: float | None
    ci_low: float | None
    ci_high: float | None
    decision: Decision
    exit_code: int
    reason: str
    n: int = 0
    min_items: int = DEFAULT_MIN_ITEMS
    max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def min_ci_width(n: int) -> float:
    """The narrowest CI the gate accepts from ``n`` items: half the width of the Wilson interval of a perfect
    record, ``z²/(n + z²)``, the narrowest interval n proportions can honestly give. Anything narrower comes from
    a degenerate estimate (zero variance, a bootstrap that only replays one outcome)."""
    return 0.5 * Z95 * Z95 / (max(n, 1) + Z95 * Z95)


def gate(stats: WinRateStats, *, metric: str = "win_rate", margin: float = 0.0,
         min_items: int = DEFAULT_MIN_ITEMS, max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE) -> GateResult:
    """Non-inferiority gate (anchors-eval §8.6): 0 pass, 1 regression, 3 inconclusive, 4 error (see the module
    docstring for the order of the checks)."""
    from sami_toolkit.core.errors import ExitCode

    if not 0 <= margin < 0.5:
        raise ConfigError(f"margin must be in [0, 0.5) (a fraction of win rate, e.g. 0.05), got {margin}")
    if isinstance(min_items, bool) or not isinstance(min_items, int) or min_items < 1:
        raise ConfigError(f"min_items must be a whole number >= 1, got {min_items!r}")
    if not 0 <= max_failure_rate <= 1:
        raise ConfigError(f"max_failure_rate must be in [0, 1] (a fraction of judgments), got {max_failure_rate}")
    value, lo, hi = stats.metric(metric)
    threshold = 0.5 - margin

    def result(decision: Decision, code: int, reason: str) -> GateResult:
        return GateResult(metric, margin, threshold, value, lo, hi, decision, code, reason, n=stats.n,
                          min_items=min_items, max_failure_rate=max_failure_rate)

    inconclusive = int(ExitCode.INCONCLUSIVE)
    if stats.n_total and stats.failure_rate > max_failure_rate:
        return result("error", int(ExitCode.INFRASTRUCTURE),
                      f"{stats.failures} of {stats.n_total} judgments failed ({stats.failure_rate:.0%}), above "
                      f"max_failure_rate {max_failure_rate:.0%}: the judge is not working (the judgments file "
                      "records each error)")
    if stats.n < min_items:
        return result("inconclusive", inconclusive,
                      f"only {stats.n} scored item(s), fewer than min_items {min_items}: too few to decide "
                      "(see 'Minimum sample size' in docs/ci-gate.md)")
    if value is None or lo is None or hi is None:
        label = metric.replace("_", " ")  # the notes about this metric start with its name
        why = [note for note in stats.notes if note.startswith(label)] or stats.notes
        return result("inconclusive", inconclusive,
                      f"{metric} has no confidence interval ({'; '.join(why) or 'no data'})")
    if hi - lo < min_ci_width(stats.n):
        return result("inconclusive", inconclusive,
                      f"95% CI [{lo:.3f}, {hi:.3f}] of {metric} is (near) zero-width for n={stats.n}: a degenerate "
                      "estimate is not evidence")
    if lo > threshold:
        return result("pass", int(ExitCode.OK), f"95% CI lower bound {lo:.3f} > {threshold:.3f}")
    if hi < threshold:
        return result("fail", int(ExitCode.GATE_FAILED),
                      f"95% CI upper bound {hi:.3f} < {threshold:.3f}: regression")
    return result("inconclusive", inconclusive,
                  f"95% CI [{lo:.3f}, {hi:.3f}] contains {threshold:.3f}: more prompts needed to decide")
