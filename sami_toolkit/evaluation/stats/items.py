"""Input of the win-rate statistics: per-item outcomes and lengths (:class:`Items`), parsed from judgment records
or a judgment JSONL file, and the tie policies (spec §8.4b).

A failed judgment has ``outcome: null`` (or ``"failed": true``): it is kept as ``None`` and never becomes a tie
(the paper's files stored failures as 0.5; we do not).

sami-kit's own judgment files also record, in every row, the settings the numbers were computed with
(``"stats_settings": {"ties", "bootstrap", "seed"}``), so that ``eval stats`` on the file reproduces ``eval
compare``'s numbers, bootstrap CIs included (:attr:`Items.settings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from sami_toolkit.core.errors import ConfigError

TiePolicy = Literal["half", "loss", "drop"]
TIE_POLICIES: tuple[str, ...] = ("half", "loss", "drop")

#: the per-row key of the statistics settings a judgment file was computed with
STATS_SETTINGS_KEY = "stats_settings"


@dataclass
class Items:
    """Per-item outcomes and token lengths. ``outcome`` is 1 / 0 / 0.5 or ``None`` (failed judgment)."""

    outcome: list[float | None]
    len_test: list[float | None]
    len_baseline: list[float | None]
    position: list[str | None] = field(default_factory=list)
    verdicts: list[list[str]] = field(default_factory=list)
    #: the ``stats_settings`` the file was written with (``ties``, ``bootstrap``, ``seed``); empty if none
    settings: dict[str, Any] = field(default_factory=dict)
    #: both responses' texts where the records carry them (``candidate`` / ``baseline``): style control's input
    text_test: list[str | None] = field(default_factory=list)
    text_baseline: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.outcome)


_OUTCOME_VALUES = {1.0, 0.0, 0.5}


def _parse_outcome(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) not in _OUTCOME_VALUES:
        raise ConfigError(f"{where}: 'outcome' must be 1, 0, 0.5 or null (failed), got {value!r}")
    return float(value)


def _parse_length(value: Any, key: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}: '{key}' must be a non-negative token count, got {value!r}")
    return float(value)


def items_from_records(records: Iterable[Mapping[str, Any]], *, source: str = "input") -> Items:
    """Build :class:`Items` from dicts with ``outcome`` and optional ``len_test`` / ``len_baseline`` (the
    paper-results format and sami-kit's own judgment files, where a failed item has ``outcome: null``)."""
    out = Items([], [], [], [], [])
    for i, rec in enumerate(records, start=1):
        where = f"{source}: line {i}"
        if not isinstance(rec, Mapping):
            raise ConfigError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        if "outcome" not in rec:
            raise ConfigError(f"{where}: missing 'outcome' (1 = test wins, 0 = baseline wins, 0.5 = tie, "
                              "null = failed)")
        outcome = _parse_outcome(rec["outcome"], where)
        if outcome is not None and rec.get("failed"):
            outcome = None
        out.outcome.append(outcome)
        out.len_test.append(_parse_length(rec.get("len_test"), "len_test", where))
        out.len_baseline.append(_parse_length(rec.get("len_baseline"), "len_baseline", where))
        pos = rec.get("candidate_position")
        out.position.append(pos if pos in ("A", "B") else None)
        verdicts = rec.get("verdicts")
        out.verdicts.append([str(v) for v in verdicts] if isinstance(verdicts, list) else [])
        out.text_test.append(rec["candidate"] if isinstance(rec.get("candidate"), str) else None)
        out.text_baseline.append(rec["baseline"] if isinstance(rec.get("baseline"), str) else None)
        if i == 1 and rec.get(STATS_SETTINGS_KEY) is not None:
            out.settings = _parse_settings(rec[STATS_SETTINGS_KEY], where)
    return out


def _parse_settings(value: Any, where: str) -> dict[str, Any]:
    """The first row's ``stats_settings``, checked (a hand-edited file gets a message, not a traceback; the
    bootstrap's upper bound is checked where it is used, by ``compute_stats``)."""
    key = STATS_SETTINGS_KEY
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: '{key}' must be an object {{\"ties\", \"bootstrap\", \"seed\"}}, "
                          f"got {type(value).__name__}")
    out: dict[str, Any] = {}
    if value.get("ties") is not None:
        if value["ties"] not in TIE_POLICIES:
            raise ConfigError(f"{where}: {key}.ties must be one of {', '.join(TIE_POLICIES)}, got {value['ties']!r}")
        out["ties"] = value["ties"]
    for name, high in (("bootstrap", None), ("seed", 2**32 - 1)):
        v = value.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (high is not None and v > high):
            raise ConfigError(f"{where}: {key}.{name} must be a whole number >= 0"
                              f"{f' and <= {high}' if high is not None else ''}, got {v!r}")
        out[name] = v
    return out


def load_items(path: str | Path) -> Items:
    """Read a judgment JSONL file into :class:`Items` (errors name the file and line)."""
    from sami_toolkit.core.io import read_jsonl

    items = items_from_records(read_jsonl(path), source=str(path))
    if len(items) == 0:
        raise ConfigError(f"{path}: no judgments in the file")
    return items


def scored_outcome(outcome: float | None, ties: str) -> float | None:
    """One judged item's value for a win rate: 1 win, 0 loss, a tie as ``ties`` says (:func:`tie_values`);
    ``None`` for a failed judgment or a dropped tie."""
    if outcome is None:
        return None
    return tie_values(ties) if outcome == 0.5 else float(outcome)


def tie_values(ties: str) -> float | None:
    """The value a tie counts as under ``ties`` (``None`` = dropped)."""
    if ties not in TIE_POLICIES:
        raise ConfigError(f"unknown tie policy '{ties}'; use one of: {', '.join(TIE_POLICIES)}")
    return {"half": 0.5, "loss": 0.0, "drop": None}[ties]
