"""Plain records: what components pass each other, and the rows of the run directory's JSONL files.

Two kinds of record live here, both dataclasses (cheap to import, no torch, easy to serialise):

* the values passed between components through the base classes of :mod:`sami_toolkit.core.components`
  (:class:`Query`, :class:`JudgeItem`, :class:`Judgment`, :class:`WriterResult`, :class:`TrackedRun`);
* one schema per row file of a run directory, so the module that writes a file and every module that reads it
  agree on its fields by construction instead of by matching string keys: :class:`SampleRow`
  (``iterations/<t>/samples.jsonl``), :class:`PairRow` (``pairs.jsonl``) and :class:`JudgmentRow`
  (``eval/win_rate_vs_*.jsonl`` and ``eval compare``'s ``judgments.jsonl``).

``from_dict`` of a row validates it and raises a :class:`ConfigError` naming ``where`` (``file:line``), because a
malformed line would otherwise surface as a ``KeyError`` or a shape error far from the file that caused it.
``to_dict`` gives the JSON object written, keys in the order the files have always had.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping

from sami_toolkit.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.text.principles import PrincipleSet

#: a field's accepted JSON type(s)
_Kind = type | tuple[type, ...]


# --------------------------------------------------------------------------------------------------------------
# Values passed between components.


@dataclass
class Query:
    """One query of a prompt set: ``text`` is what fills the task template's ``{question}`` slot's body
    (e.g. the post for TL;DR, the first human turn for HH-RLHF)."""

    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class JudgeItem:
    """One pairwise comparison: which of ``response_a`` / ``response_b`` follows ``constitution`` better."""

    id: str
    query: str
    constitution: str
    response_a: str
    response_b: str
    task: str = "generic"


Verdict = Literal["A", "B", "tie", "failed"]


@dataclass
class Judgment:
    """A judge's answer for one :class:`JudgeItem`. ``failed`` is never a verdict or a tie (spec §8.4b)."""

    id: str
    verdict: Verdict
    raw: str = ""
    error: str | None = None
    cost: float = 0.0
    cached: bool = False


@dataclass
class WriterResult:
    """What a principle writer returns: the parsed set and the model's raw answer (kept beside it)."""

    principle_set: "PrincipleSet"
    raw: str


@dataclass(frozen=True)
class TrackedRun:
    """What a :class:`~sami_toolkit.core.components.Tracker` is told about the job it records (``Tracker.start``).

    ``uid`` identifies the job for as long as its run directory lives (kept in the manifest before any tracker
    starts), so a tracker that can choose its run's id (W&B) or name (Trackio) gets the same one after a
    ``--resume``; ``resume_id`` is what this tracker's ``start`` returned the first time, once it was recorded.
    ``resumed`` with no ``resume_id`` means the first start never reported back (killed early): look the run up
    by ``uid`` rather than open a second one."""

    name: str  #: display name (the config's ``name`` and the run directory's)
    directory: Path  #: where a tracker keeps local files by default (the run directory)
    uid: str
    job: Literal["run", "eval-compare"] = "run"
    resumed: bool = False
    resume_id: str | None = None
    tags: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------------------------
# Validation shared by the row schemas.


def _kind_name(kind: _Kind) -> str:
    return kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)


def _is_kind(value: Any, kind: _Kind) -> bool:
    """``isinstance`` where a JSON ``true`` is not an int (``bool`` subclasses ``int`` in Python)."""
    kinds = (kind,) if isinstance(kind, type) else kind
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


def _check_fields(record: Any, required: Mapping[str, _Kind], where: str,
                  optional: Mapping[str, _Kind] | None = None) -> dict[str, Any]:
    """``record`` as a dict holding every ``required`` field with its JSON type (and ``optional`` ones, when
    present and not null, with theirs); anything else is a :class:`ConfigError` naming ``where``."""
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [name for name in required if name not in record]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}",
                          hint=f"each record needs: {', '.join(required)}")
    checks = {**required, **{k: v for k, v in (optional or {}).items() if record.get(k) is not None}}
    for name, kind in checks.items():
        value = record[name]
        if not _is_kind(value, kind):
            raise ConfigError(f"{where}: field '{name}' must be a {_kind_name(kind)}, got {type(value).__name__}")
    return record


# --------------------------------------------------------------------------------------------------------------
# Run-directory rows.


@dataclass
class SampleRow:
    """One line of ``iterations/<t>/samples.jsonl``: the response of π_{t-1} to one (query, constitution).

    Written by the loop's sample stage (spec §2.1 step 1), appended chunk by chunk so a killed run resumes where
    it stopped; ``(query_id, index)`` identifies the row.  ``constitution`` is the rendered generation-prompt
    constitution (file order, spec §2.8); ``items`` is the same constitution structured (``[name, is_definition]``
    pairs, :meth:`Constitution.to_dict`), so the pair stage re-orders principles without re-parsing text.  Rows
    written before ``items`` existed have ``items = None`` (their ``label`` carries the same information)."""

    query_id: str
    #: the constitution's position j among the query's C (``responses[j]`` of the pair is generated under it)
    index: int
    #: :meth:`Constitution.label`, e.g. ``"concise, not comprehensive"``
    label: str
    constitution: str
    #: the sampler's completion, before post-processing (spec §2.7 happens in the pair stage)
    raw: str
    iteration: int
    #: the writing process and wall-clock time: shows where a resumed run took over
    pid: int
    time: float
    items: list[list[Any]] | None = None

    REQUIRED: ClassVar[dict[str, _Kind]] = {"query_id": str, "index": int, "label": str, "constitution": str,
                                            "raw": str, "iteration": int, "pid": int, "time": (int, float)}

    @property
    def key(self) -> tuple[str, int]:
        """What identifies the row within its file (resume skips the keys already written)."""
        return (self.query_id, self.index)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["items"] is None:
            del data["items"]
        return data

    @classmethod
    def from_dict(cls, record: Any, where: str = "samples.jsonl") -> "SampleRow":
        _check_fields(record, cls.REQUIRED, where, optional={"items": list})
        return cls(**{f.name: record.get(f.name) for f in fields(cls)})


@dataclass
class PairRow:
    """One line of ``iterations/<t>/pairs.jsonl``: one kept query with its C constitutions, C training prompts
    (principle order shuffled per prompt, spec §2.8) and C post-processed responses, ``responses[j]`` generated
    under ``constitutions[j]``.  Written by the loop's pair stage, read by every trainer (``load_pairs``)."""

    query_id: str
    query: str
    constitutions: list[str]
    labels: list[str]
    train_prompts: list[str]
    responses: list[str]
    iteration: int

    #: every field with its JSON type, in file order (also the "each record needs" hint)
    FIELDS: ClassVar[dict[str, _Kind]] = {"query_id": str, "query": str, "constitutions": list, "labels": list,
                                          "train_prompts": list, "responses": list, "iteration": int}
    #: the lists that hold one entry per constitution
    PER_CONSTITUTION: ClassVar[tuple[str, ...]] = ("labels", "train_prompts", "responses")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def validate(cls, record: Any, where: str) -> dict[str, Any]:
        """Check a decoded line and return it unchanged; every problem is a :class:`ConfigError` naming ``where``,
        because a malformed record would otherwise surface as a shape error deep inside the scoring code."""
        _check_fields(record, cls.FIELDS, where)
        c = len(record["constitutions"])
        if c < 2:
            raise ConfigError(f"{where}: query '{record['query_id']}' has {c} constitution(s); SAMI contrasts "
                              f"at least 2 per query (spec §2.2)")
        for name in cls.PER_CONSTITUTION:
            if len(record[name]) != c:
                raise ConfigError(f"{where}: query '{record['query_id']}' has {c} constitutions but "
                                  f"{len(record[name])} {name}; each list needs one entry per constitution")
        for name in ("train_prompts", "responses"):
            bad = [i for i, v in enumerate(record[name]) if not isinstance(v, str)]
            if bad:
                raise ConfigError(f"{where}: {name}[{bad[0]}] must be a string")
        return record

    @classmethod
    def from_dict(cls, record: Any, where: str = "pairs.jsonl") -> "PairRow":
        cls.validate(record, where)
        return cls(**{name: record[name] for name in cls.FIELDS})


@dataclass
class JudgmentRow:
    """One line of a judgment file: ``eval/win_rate_vs_*.jsonl`` of a run, or ``eval compare``'s
    ``judgments.jsonl``.  It is the ``eval stats`` input format (``id``, ``outcome``, lengths) plus everything
    needed to audit a verdict: the judge's raw texts, the slot the candidate held, the prompt and both responses.

    ``outcome`` is from the candidate's side: 1 wins, 0 loses, 0.5 tie, ``None`` judge failed (never a tie,
    spec §8.4b); ``failed`` is written beside it for readers that filter on it."""

    id: str
    outcome: float | None
    error: str | None = None
    len_test: int | None = None
    len_baseline: int | None = None
    length_unit: str = "tokens"
    #: the candidate's slot ("A" or "B") in the first (or only) order judged
    candidate_position: str = ""
    verdicts: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    cost: float = 0.0
    cached: bool = False
    prompt: str = ""
    constitution: str = ""
    candidate: str = ""
    baseline: str | None = None

    REQUIRED: ClassVar[dict[str, _Kind]] = {"id": (str, int)}
    OPTIONAL: ClassVar[dict[str, _Kind]] = {"outcome": (int, float), "len_test": int, "len_baseline": int,
                                            "verdicts": list, "raw": list, "cost": (int, float)}

    @property
    def failed(self) -> bool:
        return self.outcome is None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"id": data.pop("id"), "outcome": data.pop("outcome"), "failed": self.failed, **data}

    @classmethod
    def from_dict(cls, record: Any, where: str = "judgments.jsonl") -> "JudgmentRow":
        _check_fields(record, cls.REQUIRED, where, optional=cls.OPTIONAL)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known and v is not None}
        values["id"] = str(record["id"])
        values["outcome"] = record.get("outcome")
        return cls(**values)

    @classmethod
    def of(cls, pair: Any, outcome: Any, *, len_test: int, len_baseline: int, length_unit: str = "tokens",
           prompt: str | None = None) -> "JudgmentRow":
        """The row for a judged :class:`~sami_toolkit.judging.pairwise.ComparisonPair` and its
        :class:`~sami_toolkit.judging.pairwise.PairOutcome` (duck-typed: core imports no upper layer)."""
        return cls(id=pair.id, outcome=outcome.outcome, error=outcome.error, len_test=len_test,
                   len_baseline=len_baseline, length_unit=length_unit, candidate_position=outcome.candidate_position,
                   verdicts=list(outcome.verdicts), raw=list(outcome.raw), cost=outcome.cost, cached=outcome.cached,
                   prompt=pair.query if prompt is None else prompt, constitution=pair.constitution,
                   candidate=pair.candidate, baseline=pair.baseline)
