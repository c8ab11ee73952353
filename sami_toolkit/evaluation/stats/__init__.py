"""Win-rate statistics (spec §8.4–§8.5): what ``eval stats``, ``eval compare`` and the ``win-rate`` evaluator
compute from judged items, one concern per module:

* :mod:`.items` — the input: per-item outcomes and lengths, from judgment records or a JSONL file, tie policies;
* :mod:`.proportions` — a proportion's SE, CI, t and p (spec §8.5), Wilson intervals, mean ± SEM;
* :mod:`.logistic` — the vectorised logistic GLM, its intercept's SE and the length feature;
* :mod:`.length_corrected` — the balanced, logistic and LC win rates, each with an uncertainty of its own and an
  honest fallback where the data cannot identify it;
* :mod:`.win_rates` — :class:`WinRateStats` and :func:`compute_stats`: the raw rate, the bootstrap bounds, and the
  length-corrected rates put together;
* :mod:`.health` — judge health and the shared-model-family warning;
* :mod:`.gate` — the CI gate decision (:func:`gate`): only on evidence (minimum n, failure rate, no degenerate CI).

The public names are re-exported here, so ``from sami_toolkit.evaluation.stats import compute_stats, gate`` is
the way to use them.  Only numpy/scipy are needed, imported inside the functions.
"""

from __future__ import annotations

from sami_toolkit.evaluation.stats.gate import (
    DEFAULT_MAX_FAILURE_RATE,
    DEFAULT_MIN_ITEMS,
    Decision,
    GateResult,
    gate,
    min_ci_width,
)
from sami_toolkit.evaluation.stats.health import FAMILIES, judge_health, model_family, shared_family
from sami_toolkit.evaluation.stats.items import (
    TIE_POLICIES,
    Items,
    TiePolicy,
    items_from_records,
    load_items,
    tie_values,
)
from sami_toolkit.evaluation.stats.length_corrected import LC_L2, MAX_BOOTSTRAP_WORK
from sami_toolkit.evaluation.stats.logistic import fit_logistic, intercept_se, length_feature
from sami_toolkit.evaluation.stats.proportions import (
    Z95,
    agresti_coull_variance,
    logit_interval,
    mean_sem,
    p_value_label,
    proportion_summary,
    wilson_interval,
)
from sami_toolkit.evaluation.stats.win_rates import (
    DEFAULT_BOOTSTRAP,
    GATE_METRICS,
    MAX_BOOTSTRAP,
    GateMetric,
    WinRateStats,
    check_bootstrap,
    compute_stats,
)

__all__ = [
    "DEFAULT_BOOTSTRAP", "DEFAULT_MAX_FAILURE_RATE", "DEFAULT_MIN_ITEMS", "Decision", "FAMILIES", "GATE_METRICS",
    "GateMetric", "GateResult", "Items", "LC_L2", "MAX_BOOTSTRAP", "MAX_BOOTSTRAP_WORK", "TIE_POLICIES", "TiePolicy",
    "WinRateStats", "Z95", "agresti_coull_variance", "check_bootstrap", "compute_stats", "fit_logistic", "gate",
    "intercept_se", "items_from_records", "judge_health", "length_feature", "load_items", "logit_interval",
    "mean_sem", "min_ci_width", "model_family", "p_value_label", "proportion_summary", "shared_family",
    "tie_values", "wilson_interval",
]
