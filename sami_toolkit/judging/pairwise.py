"""Shared pairwise-judging logic: candidate-vs-baseline items, position assignment, strict verdict parsing.

Every judge (API or local) answers "which of A / B follows the constitution better" (spec §8.3). This module turns
*candidate vs baseline* comparisons into positioned :class:`~sami_toolkit.core.components.JudgeItem` objects, runs a judge
over them and maps the per-order verdicts back to an outcome for the candidate:

* ``1`` candidate wins, ``0`` baseline wins, ``0.5`` tie, ``None`` failed — a failure is **never** a verdict or a
  tie (spec §8.4b: the paper's files stored failures as 0.5, so ties and failures could not be told apart).
* Positions are randomised per item with a seed, exactly as the paper's judge script did (spec §8.3:
  ``np.random.seed(1)``, ``np.random.randint(2)`` per item, ``1`` = candidate in slot A). ``both_orders=True``
  judges each item in both orders and reconciles them the MT-Bench way (anchors-eval §4, §9): agreement keeps the
  verdict, disagreement or a tie in either order is a tie, a failed order fails the item.
* :func:`parse_final_answer` is strict: the paper counted substrings after ``Final Response:`` (so "A and B" became
  a tie); here anything but a bare letter is a parse failure.

Only the standard library is imported at module level; numpy is imported inside :func:`assign_positions`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence

from sami_toolkit.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.core.components import Judge
    from sami_toolkit.core.records import JudgeItem, Judgment

#: bump whenever :func:`parse_final_answer` changes behaviour: it is part of every judgment-cache key, so cached
#: verdicts produced by an older parser are never reused.
PARSER_VERSION = "1"

Position = Literal["A", "B"]
ParsedVerdict = Literal["A", "B", "tie"]


@dataclass
class ComparisonPair:
    """One item to judge: does ``candidate`` or ``baseline`` follow ``constitution`` better for ``query``?

    ``query`` is the text of the judge template's ``{query}`` slot, already formatted with
    :func:`sami_toolkit.text.prompts.format_judge_query` (tldr: ``"POST: " + post``; hh-rlhf: the bare first human
    turn). ``task`` selects the judge template (``tldr``, ``hh-rlhf``, ``generic``; other tasks get ``generic``).
    """

    id: str
    query: str
    constitution: str
    candidate: str
    baseline: str
    task: str = "generic"


@dataclass
class PairOutcome:
    """The judged outcome of one :class:`ComparisonPair`, from the candidate's point of view."""

    id: str
    #: 1 = candidate wins, 0 = baseline wins, 0.5 = tie, None = failed (never a verdict)
    outcome: float | None
    #: slot of the candidate in the first (or only) order judged: "A" or "B"
    candidate_position: str
    #: raw per-order verdicts as the judge gave them ("A"/"B"/"tie"/"failed"), first order first
    verdicts: list[str] = field(default_factory=list)
    #: raw judge texts, one per order
    raw: list[str] = field(default_factory=list)
    error: str | None = None
    cost: float = 0.0
    #: True when every order came from the judgment cache (no API call was made)
    cached: bool = False

    @property
    def failed(self) -> bool:
        return self.outcome is None


# ------------------------------------------------------------------------------------------------ parsing
_FINAL_MARKER = re.compile(r"final\s+response\s*:", re.IGNORECASE)
# wrappers a judge commonly puts around a bare letter: quotes, brackets, markdown bold/italics/code
_WRAPPERS = "\"'`*_[](){}<>“”‘’ \t"


def parse_final_answer(text: str | None) -> ParsedVerdict | None:
    """Return ``"A"``, ``"B"`` or ``"tie"`` from a judge's answer, or ``None`` when it cannot be parsed.

    The answer is the text after the **last** ``Final Response:`` marker (case-insensitive; markdown such as
    ``**Final Response:**`` is fine), up to the end of its first non-empty line. After stripping quotes,
    brackets, markdown emphasis and a trailing period it must be exactly ``A`` or ``B`` (or the word ``tie``, for
    custom templates that allow one). Everything else — ``A and B``, ``Neither``, ``Summary A``, lower-case ``a``,
    no marker at all — is ``None`` (a failed judgment), never a guess: spec §8.3's substring counting turned such
    answers into ties or wins.
    """
    if not text:
        return None
    matches = list(_FINAL_MARKER.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():]
    # drop markdown emphasis closing the marker itself ("**Final Response:** A")
    rest = rest.lstrip("*_ \t")
    lines = [line for line in rest.splitlines() if line.strip(_WRAPPERS + ".")]
    if not lines:
        return None
    answer = lines[0].strip()
    previous = None
    while answer != previous:  # peel nested wrappers and trailing punctuation: '**"A".**' -> 'A'
        previous = answer
        answer = answer.strip(_WRAPPERS).rstrip(".!")
    if answer in ("A", "B"):
        return answer  # type: ignore[return-value]
    if answer.lower() == "tie":
        return "tie"
    return None


#: verdict parsers: ``strict`` (:func:`parse_final_answer`, the default) and ``paper`` (:func:`parse_paper_verdict`)
PARSE_MODES: tuple[str, ...] = ("strict", "paper")
_PAPER_MARKER = "Final Response:"


def parse_paper_verdict(text: str | None) -> ParsedVerdict | None:
    """The paper's parse (spec §8.3, §10.15): ``text.split('Final Response:')[1].strip()``, then case-sensitive
    substring tests — only ``A`` present is A, only ``B`` is B, **both** (``"A and B"``) is a tie.  Where the
    paper's script scored a missing marker or neither letter as 0.5, this returns ``None`` (a failed judgment,
    never a verdict: the tie policy decides nothing about failures)."""
    if not text or _PAPER_MARKER not in text:
        return None
    answer = text.split(_PAPER_MARKER)[1].strip()
    has_a, has_b = "A" in answer, "B" in answer
    if has_a and has_b:
        return "tie"
    if has_a:
        return "A"
    if has_b:
        return "B"
    return None


def reparse(judgment: "Judgment", mode: str) -> "Judgment":
    """``judgment`` with its verdict re-read from its raw answer under ``mode`` (``strict`` leaves it as the judge
    parsed it).  A judge without the paper's marker in its raw text (e.g. a logit judge) keeps its verdict."""
    if mode == "strict":
        return judgment
    if mode != "paper":
        raise ConfigError(f"unknown verdict parse mode '{mode}'; choose one of: {', '.join(PARSE_MODES)}")
    if not judgment.raw or _PAPER_MARKER not in judgment.raw:
        return judgment
    import dataclasses

    verdict = parse_paper_verdict(judgment.raw)
    if verdict is None:
        return dataclasses.replace(judgment, verdict="failed",
                                   error=judgment.error or "paper parse: neither 'A' nor 'B' after 'Final Response:'")
    return dataclasses.replace(judgment, verdict=verdict, error=None)


# ------------------------------------------------------------------------------------------------ templates
#: the placeholders a judge template may use; anything else in braces is left as literal text
TEMPLATE_FIELDS = ("query", "constitution", "response_a", "response_b")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(TEMPLATE_FIELDS) + r")\}")


def judge_templates(task: str) -> tuple[str, str]:
    """``(system, user)`` judge templates for ``task`` (spec §7.5) from :mod:`sami_toolkit.text.prompts`.

    ``{query}`` is filled with :attr:`ComparisonPair.query` / :attr:`JudgeItem.query` as given: callers format it
    with :func:`sami_toolkit.text.prompts.format_judge_query` first (tldr: ``"POST: " + post``, as in the paper's code).
    A task without templates of its own (a free-form task such as "summarize legal contracts") gets the ``generic``
    prompt.
    """
    from sami_toolkit.text.prompts import TASK_TEMPLATES, get_templates, normalize_task

    try:
        templates = get_templates(normalize_task(task))
    except ConfigError:
        templates = TASK_TEMPLATES["generic"]
    return templates.judge_system, templates.judge_user


def check_template(template: str, *, where: str) -> None:
    """A user judge template must show both responses; say which placeholder is missing (exit 2)."""
    missing = [f"{{{name}}}" for name in ("response_a", "response_b") if f"{{{name}}}" not in template]
    if missing:
        raise ConfigError(f"{where}: the judge template has no {' or '.join(missing)} placeholder",
                          hint="judge templates may use {query}, {constitution}, {response_a}, {response_b}")


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill the known placeholders only: braces in responses or other template text are left untouched
    (``str.format`` would choke on a response containing ``{``)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def render_judge_prompt(item: "JudgeItem", system_template: str, user_template: str) -> tuple[str, str]:
    """``(system, user)`` messages for one item."""
    values = {"query": item.query, "constitution": item.constitution,
              "response_a": item.response_a, "response_b": item.response_b}
    return render_template(system_template, values), render_template(user_template, values)


def resolve_templates(task: str, system_template: str | None, template: str | None, *, where: str) -> tuple[str, str]:
    """The task's default templates, replaced by a component's ``system_template`` / ``template`` options."""
    system, user = judge_templates(task)
    if template is not None:
        check_template(template, where=where)
        user = template
    if system_template is not None:
        system = system_template
    return system, user


# ------------------------------------------------------------------------------------------------ positions
def assign_positions(n: int, seed: int = 1) -> list[Position]:
    """Slot of the candidate for each of ``n`` items: ``np.random.seed(seed); np.random.randint(2)`` per item,
    ``1`` -> candidate is A (spec §8.3), reproducing the paper's assignment for ``seed=1``."""
    import numpy as np

    draws = np.random.RandomState(seed).randint(2, size=n) if n else []
    return ["A" if int(d) == 1 else "B" for d in draws]


def _item(pair: ComparisonPair, candidate_position: Position) -> "JudgeItem":
    from sami_toolkit.core.records import JudgeItem

    a, b = (pair.candidate, pair.baseline) if candidate_position == "A" else (pair.baseline, pair.candidate)
    return JudgeItem(id=f"{pair.id}#{candidate_position}", query=pair.query, constitution=pair.constitution,
                     response_a=a, response_b=b, task=pair.task)


def other_position(position: str) -> Position:
    """The other slot: "A" <-> "B" (the second order of a pair, or a probe's swapped position)."""
    return "B" if position == "A" else "A"


def order_outcome(verdict: str, candidate_position: str) -> float | None:
    """One order's verdict as the candidate's outcome: 1 it won, 0 it lost, 0.5 a tie, None a failed verdict."""
    if verdict == "tie":
        return 0.5
    if verdict in ("A", "B"):
        return 1.0 if verdict == candidate_position else 0.0
    return None


def combine_orders(verdicts: Sequence[str], positions: Sequence[str]) -> float | None:
    """One outcome from per-order verdicts (MT-Bench reconciliation, anchors-eval §4): a failed order fails the
    item; the orders must agree on a winner, otherwise (or if either says tie) it is a tie."""
    outcomes = [order_outcome(v, p) for v, p in zip(verdicts, positions)]
    if not outcomes or any(o is None for o in outcomes):
        return None
    if len(set(outcomes)) == 1:
        return outcomes[0]
    return 0.5


def judge_pairs(judge: "Judge", pairs: Sequence[ComparisonPair], *, seed: int = 1, both_orders: bool = False,
                progress: Callable[[int], Any] | None = None, parse: str = "strict",
                positions: Sequence[str] | None = None) -> list[PairOutcome]:
    """Judge every pair with ``judge`` and return one :class:`PairOutcome` per pair, in order.

    ``parse="paper"`` re-reads every verdict from the judge's raw answer with :func:`parse_paper_verdict`
    (spec §10.15: "A and B" is a tie as in the paper's numbers); ``strict`` (default) keeps the judge's own parse.

    All orders of all pairs go to the judge in **one** ``judge.judge`` call, so API judges can run them
    concurrently and caches see them together. ``progress(n)`` is called as judgments finish (``2n`` calls'
    worth of progress with ``both_orders``). ``positions`` (the candidate's first slot per pair) replaces the
    seeded assignment: the sequential gate judges a subset per round in the slots a full run gives those items,
    so a later full run finds every verdict in the judgment cache.
    """
    if positions is not None and len(positions) != len(pairs):
        raise ValueError(f"{len(positions)} positions for {len(pairs)} pairs")
    first = list(positions) if positions is not None else assign_positions(len(pairs), seed)
    orders: list[list[Position]] = [[p, other_position(p)] if both_orders else [p]  # type: ignore[misc]
                                    for p in first]
    items = [_item(pair, pos) for pair, poss in zip(pairs, orders) for pos in poss]
    judgments: list[Judgment] = list(judge.judge(items, progress=progress)) if items else []
    if parse != "strict":
        judgments = [reparse(j, parse) for j in judgments]
    if len(judgments) != len(items):
        from sami_toolkit.core.errors import InfrastructureError

        raise InfrastructureError(f"judge '{judge.name}' returned {len(judgments)} judgments for {len(items)} items")
    from sami_toolkit.core.secrets import Scrubber

    # Every judge's words pass the one scrubber here (spec: secrets never reach judgments or reports): a plugin judge
    # that forgot to scrub, or a server echoing the Authorization header, still leaks nothing downstream.
    scrub = Scrubber()
    out: list[PairOutcome] = []
    k = 0
    for pair, poss in zip(pairs, orders):
        js = judgments[k:k + len(poss)]
        k += len(poss)
        verdicts = [j.verdict for j in js]
        errors = [scrub(j.error) for j in js if j.error]
        if any(v == "failed" for v in verdicts) and not errors:
            errors = ["judge returned 'failed' without an error message"]
        outcome = combine_orders(verdicts, poss)
        out.append(PairOutcome(id=pair.id, outcome=outcome, candidate_position=poss[0], verdicts=verdicts,
                               raw=[scrub(j.raw) for j in js], error="; ".join(errors) if outcome is None else None,
                               cost=sum(j.cost for j in js), cached=all(j.cached for j in js)))
    return out


def guarded_judge_pairs(judge: "Judge", pairs: Sequence[ComparisonPair], **kwargs: Any) -> list[PairOutcome]:
    """:func:`judge_pairs`, with an unexpected exception from a (plugin) judge turned into one InfrastructureError
    line (exit 4) naming the judge, instead of a traceback (a CI log should say which judge broke, not where)."""
    from sami_toolkit.core.errors import InfrastructureError, SamiKitError

    try:
        return judge_pairs(judge, pairs, **kwargs)
    except SamiKitError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin judge's bug must not print a traceback in CI
        from sami_toolkit.core.secrets import scrub

        raise InfrastructureError(f"judge '{judge.name}' failed: {type(exc).__name__}: {scrub(str(exc))}") from exc


def count_outcomes(outcomes: Sequence[PairOutcome]) -> dict[str, int]:
    """``{"wins", "losses", "ties", "failed", "n"}`` for the candidate; the four counts always add up to ``n``."""
    wins = sum(1 for o in outcomes if o.outcome == 1.0)
    losses = sum(1 for o in outcomes if o.outcome == 0.0)
    ties = sum(1 for o in outcomes if o.outcome == 0.5)
    failed = sum(1 for o in outcomes if o.outcome is None)
    return {"wins": wins, "losses": losses, "ties": ties, "failed": failed, "n": len(outcomes)}
