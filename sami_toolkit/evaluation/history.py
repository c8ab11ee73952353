"""Checkpoint history (``sami-kit eval history DIR…``, issue 18 §5): the gate metrics of successive checkpoints,
each with its CI, the steps that are a significant change from the previous checkpoint, and — with several
candidates judged against one baseline — a Bradley–Terry ranking with bootstrap intervals.

Inputs, in the order given (the order is the checkpoint order):

* an ``eval compare`` output: its ``summary.json``, or the ``--out-dir`` holding it (with ``judgments.jsonl``
  beside it, the per-item outcomes make the step tests paired and the ranking's bootstrap joint over prompts);
* a ``sami-kit run`` directory: one checkpoint per iteration with win-rate metrics in
  ``iterations/<t>/metrics.json`` (per comparator, ``vs_base`` / ``vs_instruct``).

A step is flagged when the change of a metric from the previous checkpoint **against the same baseline** is
significant at 5% two-sided: paired over the shared prompts where both per-item files exist (``d_i = x'_i − x_i``,
``z = mean(d)/(sd(d)/√n)``), otherwise from the two CIs (``SE ≈ (high − low)/(2·1.96)``, independent samples:
conservative for the usual positively correlated checkpoints).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.evaluation.stats.items import TIE_POLICIES, scored_outcome

#: the metrics history shows, when present
HISTORY_METRICS: tuple[str, ...] = ("win_rate", "lc_win_rate", "sc_win_rate", "balanced_win_rate")
_Z = 1.96


@dataclass
class Checkpoint:
    """One gate (or one run iteration against one comparator)."""

    label: str
    baseline: str
    source: str
    metrics: dict[str, tuple[float | None, float | None, float | None]]
    n: int = 0
    decision: str | None = None
    #: per-item scored outcomes by prompt id, when the judgments are available
    outcomes: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("outcomes")
        return d


def _metrics_from_summary(s: dict[str, Any]) -> dict[str, tuple[Any, Any, Any]]:
    keys = {"win_rate": ("win_rate", "ci_low", "ci_high"), "lc_win_rate": ("lc_win_rate", "lc_ci_low", "lc_ci_high"),
            "sc_win_rate": ("sc_win_rate", "sc_ci_low", "sc_ci_high"),
            "balanced_win_rate": ("balanced_win_rate", "balanced_ci_low", "balanced_ci_high")}
    return {m: (s.get(v), s.get(lo), s.get(hi)) for m, (v, lo, hi) in keys.items() if s.get(v) is not None}


def _read_outcomes(path: Path, ties: str) -> dict[str, float]:
    from sami_toolkit.core.io import read_jsonl

    out: dict[str, float] = {}
    for i, row in enumerate(read_jsonl(path), start=1):
        if isinstance(row, dict) and "id" in row:
            v = scored_outcome(row.get("outcome"), ties)
            if v is not None:
                out[str(row["id"])] = v
    return out


def _from_summary(path: Path) -> Checkpoint:
    from sami_toolkit.core.io import read_json

    data = read_json(path, None)
    if not isinstance(data, dict) or "win_rate" not in data:
        raise ConfigError(f"{path}: not an eval compare summary (no 'win_rate')",
                          hint="give summary.json files, eval compare --out-dir directories or run directories")
    ties = str(data.get("tie_policy") or "half")
    ties = ties if ties in TIE_POLICIES else "half"  # a summary from elsewhere: its ties count as halves
    judgments = path.parent / "judgments.jsonl"
    gate = data.get("gate") or {}
    return Checkpoint(label=str(data.get("candidate") or path.parent.name), baseline=str(data.get("baseline") or "?"),
                      source=str(path), metrics=_metrics_from_summary(data), n=int(data.get("n") or 0),
                      decision=gate.get("decision"),
                      outcomes=_read_outcomes(judgments, ties) if judgments.is_file() else {},
                      counts={k: int(data.get(k) or 0) for k in ("wins", "ties", "losses")})


def _from_run(root: Path) -> list[Checkpoint]:
    from sami_toolkit.core.io import read_json

    out = []
    iters = sorted((p for p in (root / "iterations").iterdir() if p.is_dir() and p.name.isdigit()),
                   key=lambda p: int(p.name))
    for it in iters:
        metrics = read_json(it / "metrics.json", {}) or {}
        for comparator in ("base", "instruct"):
            sfx = f"_vs_{comparator}"
            if not isinstance(metrics.get(f"win_rate{sfx}"), (int, float)) or metrics.get(f"win_rate{sfx}_note"):
                continue
            m = {"win_rate": (metrics.get(f"win_rate{sfx}"), metrics.get(f"win_rate{sfx}_ci_low"),
                              metrics.get(f"win_rate{sfx}_ci_high"))}
            if metrics.get(f"lc_win_rate{sfx}") is not None:
                m["lc_win_rate"] = (metrics.get(f"lc_win_rate{sfx}"), metrics.get(f"lc_win_rate{sfx}_ci_low"),
                                    metrics.get(f"lc_win_rate{sfx}_ci_high"))
            judgments = it / "eval" / f"win_rate{sfx}.jsonl"
            n = int(metrics.get(f"win_rate{sfx}_n") or 0)
            outcomes = _read_outcomes(judgments, "half") if judgments.is_file() else {}
            out.append(Checkpoint(label=f"{root.name}/t{it.name}", baseline=comparator, source=str(it), metrics=m,
                                  n=n, outcomes=outcomes))
    if not out:
        raise ConfigError(f"{root}: a run directory without win-rate metrics in iterations/<t>/metrics.json",
                          hint="evaluate with the win-rate evaluator, or give eval compare outputs")
    return out


def load_history(paths: Sequence[str | Path]) -> list[Checkpoint]:
    """The checkpoints of ``paths`` in order (see the module docstring for what each may be)."""
    if not paths:
        raise ConfigError("eval history needs at least one summary.json, eval compare output or run directory")
    out: list[Checkpoint] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            out.append(_from_summary(path))
        elif (path / "summary.json").is_file():
            out.append(_from_summary(path / "summary.json"))
        elif (path / "iterations").is_dir():
            out.extend(_from_run(path))
        elif not path.exists():
            raise ConfigError(f"{path}: no such file or directory")
        else:
            raise ConfigError(f"{path}: neither a summary.json, an eval compare --out-dir nor a run directory")
    labels = [c.label for c in out]
    for i, c in enumerate(out):  # the same candidate name twice: tell them apart by where they came from
        if labels.count(c.label) > 1:
            c.label = f"{c.label} ({Path(c.source).parent.name if c.source.endswith('.json') else Path(c.source).name})"
    return out


def _se(ci: tuple[Any, Any, Any]) -> float | None:
    _, lo, hi = ci
    if lo is None or hi is None:
        return None
    return (float(hi) - float(lo)) / (2 * _Z)


def step_changes(checkpoints: Sequence[Checkpoint]) -> list[dict[str, Any]]:
    """For each checkpoint after the first of its baseline, and each metric both have: the change, its z and
    whether it is significant (5%, two-sided); paired on per-item outcomes for ``win_rate`` when available."""
    import numpy as np

    last: dict[str, Checkpoint] = {}
    rows = []
    for c in checkpoints:
        prev = last.get(c.baseline)
        last[c.baseline] = c
        if prev is None:
            continue
        for metric in HISTORY_METRICS:
            if metric not in c.metrics or metric not in prev.metrics:
                continue
            v1, v2 = prev.metrics[metric][0], c.metrics[metric][0]
            if v1 is None or v2 is None:
                continue
            shared = sorted(set(prev.outcomes) & set(c.outcomes))
            method = "CIs (independent)"
            z = None
            if metric == "win_rate" and len(shared) >= 10:
                d = np.array([c.outcomes[i] - prev.outcomes[i] for i in shared])
                sd = float(d.std(ddof=1))
                if sd > 0:
                    z = float(d.mean() / (sd / math.sqrt(len(d))))
                    method = f"paired over {len(shared)} prompts"
            if z is None:
                s1, s2 = _se(prev.metrics[metric]), _se(c.metrics[metric])
                if s1 is None or s2 is None or not (s1 > 0 or s2 > 0):
                    continue
                z = (v2 - v1) / math.sqrt(s1 * s1 + s2 * s2)
            rows.append({"from": prev.label, "to": c.label, "baseline": c.baseline, "metric": metric,
                         "change": v2 - v1, "z": z, "significant": abs(z) > _Z, "method": method,
                         "direction": "up" if v2 > v1 else "down"})
    return rows


def rankings(checkpoints: Sequence[Checkpoint], *, bootstrap: int = 1000, seed: int = 0) -> dict[str, list[dict]]:
    """Bradley–Terry ranking per baseline with at least two candidates: ``{baseline: [ranking rows]}``."""
    from sami_toolkit.evaluation.stats.bradley_terry import rank_against_baseline

    out: dict[str, list[dict]] = {}
    by_baseline: dict[str, list[Checkpoint]] = {}
    for c in checkpoints:
        by_baseline.setdefault(c.baseline, []).append(c)
    for baseline, group in by_baseline.items():
        if len(group) < 2:
            continue
        shared = set.intersection(*(set(c.outcomes) for c in group)) if all(c.outcomes for c in group) else set()
        if shared:
            ids = sorted(shared)
            data = {c.label: [c.outcomes[i] for i in ids] for c in group}
        else:
            data = {c.label: [1.0] * c.counts.get("wins", 0) + [0.5] * c.counts.get("ties", 0)
                    + [0.0] * c.counts.get("losses", 0) for c in group}
            if any(not v for v in data.values()):
                continue
        ranked = rank_against_baseline(data, bootstrap=bootstrap, seed=seed, paired=bool(shared))
        out[baseline] = [r.to_dict() for r in ranked]
    return out
