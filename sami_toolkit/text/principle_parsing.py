"""Parsing and validating a principle writer's answer (spec §5.1, §5.2).

Writers answer in prose around a numbered list; :func:`parse_principles` finds the definitions and the antitheses
(markdown bold, ``### Antitheses`` headers, ``1)`` numbering, wrapped lines, labels such as ``Antithesis of
Concise`` or ``Verbose``) and :func:`principle_problems` rejects what SAMI cannot use: an empty text, the format's
placeholder copied back, an antithesis that repeats its definition, any text repeating another (the same line on
both sides of a contrast teaches nothing, spec §5.2). Both raise or return problems by name, so that the writer
can be told what to fix (:mod:`sami_toolkit.text.principle_writing` retries with them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from sami_toolkit.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.text.principles import PrincipleSet


class PrincipleParseError(ConfigError):
    """A text that is no usable principle set (exit 2): something missing, empty or repeated. ``raw`` keeps the
    text and ``problems`` lists what is wrong (the retry prompt quotes them)."""

    def __init__(self, message: str, *, raw: str = "", hint: str | None = None,
                 problems: Sequence[str] = ()) -> None:
        super().__init__(message, hint=hint)
        self.raw = raw
        self.problems = list(problems) or [message]


def display_name(name: str) -> str:
    """``"no_jargon"`` -> ``"No jargon"``: how a principle name is shown to the writer."""
    text = re.sub(r"[_-]+", " ", name).strip()
    return text[:1].upper() + text[1:]


# ------------------------------------------------------------------------------------------------- parsing
_ITEM = re.compile(r"^\s*(?:[-*•]\s+)?[*_]*\s*(\d{1,2})\s*[.)]\s*(.*)$")
_ANTI_WORD = re.compile(r"antithes[ie]s|antithesis|contrastive|opposites?|negations?", re.IGNORECASE)


def _is_anti_header(line: str) -> bool:
    """``Antitheses:``, ``### Antitheses``, ``**Two antitheses for contrast:**`` — but not a numbered item such
    as ``3. Antithesis of Concise: Summaries…`` (that is an antithesis, not a header)."""
    if _ITEM.match(line) or not _ANTI_WORD.search(line):
        return False
    after_colon = line.rsplit(":", 1)[1] if ":" in line else ""
    return not after_colon.strip(" *_#") and len(line.split()) <= 15


_DEF_HEADER = re.compile(r"^[\s#*_>-]*(principles?|definitions?)\s*(:|\*|$)", re.IGNORECASE)


@dataclass
class _Item:
    number: int
    label: str
    text: str
    #: the whole item after its number, for when the "label" was really the start of a sentence
    full: str = ""


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _split_label(rest: str) -> tuple[str, str]:
    """``"**Concise**: Summaries…"`` -> ``("Concise", "Summaries…")``; no colon -> ``("", rest)``."""
    plain = rest.strip()
    match = re.match(r"^[*_\s]*([^:\n]{1,80}?)[*_\s]*:[*_\s]*(.*)$", plain)
    if match and len(match.group(1).split()) <= 8:
        return match.group(1).strip(" *_[]\"'"), match.group(2).strip()
    bold = re.match(r"^(\*\*|__)(.{1,80}?)\1\s*[-–—.]?\s*(.*)$", plain)  # "**Concise** - Summaries…"
    if bold and len(bold.group(2).split()) <= 8:
        return bold.group(2).strip(" *_[]\"'"), bold.group(3).strip()
    return "", plain.strip("*_ ")


def _items(lines: Sequence[str]) -> list[_Item]:
    items: list[_Item] = []
    open_item = False
    for line in lines:
        m = _ITEM.match(line)
        if m:
            label, text = _split_label(m.group(2))
            items.append(_Item(int(m.group(1)), label, text, m.group(2)))
            open_item = True
        elif not line.strip() or _is_anti_header(line) or _DEF_HEADER.match(line):
            open_item = False  # a blank line or a header ends an item; later prose is commentary
        elif open_item:
            # a wrapped line continues the previous item (constitutions want one line per principle)
            items[-1].text = f"{items[-1].text} {line.strip()}".strip()
            items[-1].full = f"{items[-1].full} {line.strip()}".strip()
    for item in items:
        item.text = re.sub(r"\s+", " ", item.text.strip().strip("*_")).strip()
        item.full = re.sub(r"\s+", " ", item.full.replace("**", "").replace("__", "").strip()).strip()
    return items


def _match(label: str, names: Sequence[str]) -> str | None:
    words = f" {_norm(label)} "
    hits = [n for n in names if f" {_norm(display_name(n))} " in words or f" {_norm(n)} " in words]
    return hits[0] if len(hits) == 1 else None


def _assign(items: list[_Item], names: Sequence[str]) -> dict[str, str]:
    """Map items to principle names: by label when it names exactly one principle, else by position."""
    out: dict[str, str] = {}
    by_label = [_match(it.label, names) for it in items]
    for it, name in zip(items, by_label):
        if name is not None and name not in out and it.text:
            out[name] = it.text
    for idx, it in enumerate(items):
        if by_label[idx] is not None or not it.text:
            continue
        if len(it.label.split()) > 3:  # "Summaries should be brief: two sentences" is a sentence, not a label
            it.text = it.full
        # unlabelled (or oddly labelled, e.g. "Verbose") item: its number, else its position
        candidates = [names[it.number - 1]] if 1 <= it.number <= len(names) else []
        if idx < len(names):
            candidates.append(names[idx])
        for name in candidates:
            if name not in out:
                out[name] = it.text
                break
    return out


def _empty(items: Sequence[_Item], names: Sequence[str]) -> set[str]:
    """Principles named by an item that has no text (``2. Concise:`` and nothing after it)."""
    return {n for n in (_match(it.label, names) for it in items if not it.text) if n is not None}


#: the format block's example openings (and its ``[principle]`` slot), normalised: a weak writer copies them back
_PLACEHOLDERS = {"summaries should be", "responses should be", "principle"}


def principle_problems(principles: Sequence[tuple[str, str, str]]) -> list[str]:
    """What makes ``(name, definition, antithesis)`` triples unusable for SAMI: an empty text, the format's
    placeholder copied back, an antithesis that repeats its definition, or any text that repeats another one
    (compared without case and punctuation). Two equal texts would put the same line on both sides of a contrast
    (spec §5.2). ``[]``: usable."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for name, definition, antithesis in principles:
        for kind, text in (("definition", definition), ("antithesis", antithesis)):
            what, key = f"the {kind} of '{name}'", _norm(text)
            if not key:
                problems.append(f"{what} is empty")
            elif key in _PLACEHOLDERS:
                problems.append(f"{what} is the format's placeholder ({text.strip()!r})")
            elif key in seen:
                same = "its definition" if seen[key] == f"the definition of '{name}'" else seen[key]
                problems.append(f"{what} repeats {same}")
            else:
                seen[key] = what
    return problems


def parse_principles(raw_text: str, names: Sequence[str], *, task: str = "", set_name: str = "written",
                     writer: str = "unknown", source: str = "") -> "PrincipleSet":
    """Parse a writer's answer into a :class:`~sami_toolkit.text.principles.PrincipleSet` with one principle per name.

    The definitions are the numbered items before the antitheses header; the antitheses those after it. Without a
    header, ``2k`` numbered items are read as ``k`` definitions followed by ``k`` antitheses. Raises
    :class:`PrincipleParseError` naming every missing or empty definition or antithesis, and every text that
    :func:`principle_problems` rejects.
    """
    from pydantic import ValidationError

    from sami_toolkit.text.principles import Principle, PrincipleSet

    names = list(names)
    lines = (raw_text or "").splitlines()
    # the antitheses header is the first one *after* a numbered item (a preamble such as "Here are the
    # principles and their antitheses:" is not it) and before a numbered item (closing remarks are not it)
    first_item = next((i for i, line in enumerate(lines) if _ITEM.match(line)), len(lines))
    numbered = [i for i, line in enumerate(lines) if _ITEM.match(line)]
    header = next((i for i, line in enumerate(lines)
                   if i > first_item and _is_anti_header(line) and any(j > i for j in numbered)), None)
    if header is not None:
        definitions, antitheses = _items(lines[:header]), _items(lines[header + 1:])
    else:
        everything = _items(lines)
        definitions, antitheses = everything[:len(names)], everything[len(names):]
    defs, antis = _assign(definitions, names), _assign(antitheses, names)
    empty = _empty(definitions, names), _empty(antitheses, names)
    missing = [f"definition of '{n}'{' (empty)' if n in empty[0] else ''}" for n in names if n not in defs]
    missing += [f"antithesis of '{n}'{' (empty)' if n in empty[1] else ''}" for n in names if n not in antis]
    if missing:
        where = "" if header is not None else " (no 'Antitheses:' header found)"
        raise PrincipleParseError(f"could not parse the writer's answer: missing {', '.join(missing)}{where}",
                                  raw=raw_text, problems=[f"missing {m}" for m in missing],
                                  hint="expected '1. Name: definition' lines, then 'Antitheses:' and "
                                       "'1. Name: antithesis' lines")
    problems = principle_problems([(n, defs[n], antis[n]) for n in names])
    if problems:
        raise PrincipleParseError(f"the writer's answer is not usable: {'; '.join(problems)}", raw=raw_text,
                                  problems=problems, hint="every principle needs its own definition and an "
                                                          "antithesis that says the opposite")
    try:
        return PrincipleSet(name=set_name, task=task or "unknown", writer=writer, source=source,
                            principles=[Principle(name=n, definition=defs[n], antithesis=antis[n]) for n in names])
    except ValidationError as exc:
        from sami_toolkit.core.config import format_validation_error

        raise PrincipleParseError("the writer's answer parsed into an invalid principle set:\n"
                                  + format_validation_error(exc), raw=raw_text) from None
