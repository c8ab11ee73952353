"""Principle writing (spec §5.1): the seed prompt, a tolerant parser for the writer's answer, and saving the set.

The paper asked a model (claude-opus, mistral-7b-instruct) to define two named principles for a task and to write
one antithesis per principle "that I can use as a contrastive prompt" (spec §5.1, paper A.12). This module:

* renders that seed prompt for any number ``k`` of principles (:func:`writer_prompt`);
* parses answers like ``1. Concise: Summaries should be…`` followed by an antitheses block
  (:func:`parse_principles`), tolerating markdown bold, ``### Antitheses`` headers, ``1)`` numbering, wrapped lines
  and labels such as ``Antithesis of Concise`` or ``Verbose``; anything missing is a
  :class:`PrincipleParseError` (exit 2) naming what is missing, with the raw answer attached;
* writes the validated set as YAML plus the raw answer beside it (:func:`write_principles`), also when parsing
  fails, so nothing the (possibly paid) writer returned is lost.

Writers that turn a prompt into text subclass :class:`PromptedWriter` and implement only :meth:`complete`.
"""

from __future__ import annotations

import os
import re
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from sami_toolkit.core.components import PrincipleWriter, WriterResult
from sami_toolkit.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.text.principles import PrincipleSet

_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                 9: "nine", 10: "ten"}


class PrincipleParseError(ConfigError):
    """The writer's answer does not contain every definition and antithesis (exit 2); ``raw`` keeps the answer."""

    def __init__(self, message: str, *, raw: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.raw = raw


# ------------------------------------------------------------------------------------------------- prompt
def display_name(name: str) -> str:
    """``"no_jargon"`` -> ``"No jargon"``: how a principle name is shown to the writer."""
    text = re.sub(r"[_-]+", " ", name).strip()
    return text[:1].upper() + text[1:]


def writer_prompt(task: str, names: Sequence[str], *, example_start: str | None = None) -> str:
    """The seed prompt of spec §5.1 (paper A.12) generalised from two principles to ``k``.

    For ``k = 2`` the wording is the paper's ("both principles", "two antitheses"). The format block also shows the
    ``Antitheses:`` header (the paper left the antitheses' layout to the model), so answers parse mechanically.
    ``example_start`` is the sentence opening shown in the format ("Summaries should be..." for summarisation
    tasks, as in the paper; "Responses should be..." otherwise).
    """
    k = len(names)
    count = _NUMBER_WORDS.get(k, str(k))
    if example_start is None:
        example_start = "Summaries should be..." if "summar" in task.lower() else "Responses should be..."
    listing = "\n".join(f"{i}. {display_name(n)}" for i, n in enumerate(names, 1))
    which = "both principles" if k == 2 else ("the principle" if k == 1 else f"all {count} principles")
    plural = "principle" if k == 1 else "principles"
    anti = "an antithesis" if k == 1 else f"{count} antitheses"
    return (f"I am writing a constitution for how to {task}.\n"
            f"The constitution consists of {count} {plural}:\n\n{listing}\n\n"
            f"Return {which} and a good definition of {'it' if k == 1 else 'them'} so I can use "
            f"{'it' if k == 1 else 'them'} for aligning a super-human model.\n"
            f"Moreover, using the same format, return {anti} that I can use as a contrastive prompt.\n\n"
            f"Use the format:\n1. [principle]: {example_start}\n\nAntitheses:\n1. [principle]: {example_start}")


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


def parse_principles(raw_text: str, names: Sequence[str], *, task: str = "", set_name: str = "written",
                     writer: str = "unknown", source: str = "") -> "PrincipleSet":
    """Parse a writer's answer into a :class:`~sami_toolkit.text.principles.PrincipleSet` with one principle per name.

    The definitions are the numbered items before the antitheses header; the antitheses those after it. Without a
    header, ``2k`` numbered items are read as ``k`` definitions followed by ``k`` antitheses. Raises
    :class:`PrincipleParseError` naming every missing definition or antithesis.
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
    missing = [f"definition of '{n}'" for n in names if n not in defs]
    missing += [f"antithesis of '{n}'" for n in names if n not in antis]
    if missing:
        where = "" if header is not None else " (no 'Antitheses:' header found)"
        raise PrincipleParseError(f"could not parse the writer's answer: missing {', '.join(missing)}{where}",
                                  raw=raw_text,
                                  hint="expected '1. Name: definition' lines, then 'Antitheses:' and "
                                       "'1. Name: antithesis' lines")
    try:
        return PrincipleSet(name=set_name, task=task or "unknown", writer=writer, source=source,
                            principles=[Principle(name=n, definition=defs[n], antithesis=antis[n]) for n in names])
    except ValidationError as exc:
        from sami_toolkit.core.config import format_validation_error

        raise PrincipleParseError("the writer's answer parsed into an invalid principle set:\n"
                                  + format_validation_error(exc), raw=raw_text) from None


# ------------------------------------------------------------------------------------------------- writers
class PromptedWriter(PrincipleWriter):
    """A principle writer that sends the spec §5.1 seed prompt to a model: subclasses implement :meth:`complete`."""

    @abstractmethod
    def complete(self, prompt: str) -> str:
        """Return the model's answer to ``prompt`` (errors: :class:`~sami_toolkit.core.errors.InfrastructureError`)."""

    def writer_label(self) -> str:
        """What goes in the set's ``writer`` field: the model name."""
        return str(getattr(self.options, "model", self.name))

    def write(self, task: str, principles: Sequence[str]) -> WriterResult:
        raw = self.complete(writer_prompt(task, principles))
        principle_set = parse_principles(raw, principles, task=task, writer=self.writer_label(),
                                         source=f"principle writer '{self.name}' (spec §5.1 seed prompt)")
        return WriterResult(principle_set=principle_set, raw=raw)


# ------------------------------------------------------------------------------------------------- saving
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def check_names(names: Sequence[str]) -> list[str]:
    """Principle names must be non-empty, unique identifiers (they become YAML keys and CLI arguments)."""
    cleaned = [n.strip() for n in names]
    if not cleaned:
        raise ConfigError("no principles given: pass at least one --principle NAME")
    for n in cleaned:
        if not _NAME.match(n):
            raise ConfigError(f"principle name '{n}': use letters, digits, '-' or '_', starting with a letter "
                              "(e.g. --principle concise)")
    dupes = sorted({n for n in cleaned if cleaned.count(n) > 1})
    if dupes:
        raise ConfigError(f"principle names repeated: {', '.join(dupes)}")
    return cleaned


def raw_path_for(out: str | os.PathLike) -> Path:
    """Where the raw answer is kept: ``my-principles.yaml`` -> ``my-principles.raw.txt``."""
    return Path(out).with_suffix(".raw.txt")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def principle_set_yaml(principle_set: "PrincipleSet") -> str:
    import yaml

    data = principle_set.model_dump(exclude_none=True)
    header = ("# Principle set written by `sami-kit principles write` (spec §5.1 seed prompt).\n"
              "# Review it before training: writers can be wrong. The raw answer is kept beside this file.\n")
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100000)


def write_principles(writer: PrincipleWriter, task: str, names: Sequence[str], out: str | os.PathLike, *,
                     set_name: str | None = None, overwrite: bool = False) -> WriterResult:
    """Ask ``writer`` for principles, validate them, write ``out`` (YAML) and the raw answer beside it.

    When the answer cannot be parsed the raw answer is still saved (``<out stem>.raw.txt``) and the
    :class:`PrincipleParseError` (exit 2) names that file.
    """
    out = Path(out)
    names = check_names(names)
    if not task.strip():
        raise ConfigError("--task is empty: describe the task, e.g. --task 'summarize reddit posts'")
    if out.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"--out {out}: the principle set is YAML; use a .yaml file name")
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out} already exists", hint="pass --force to overwrite it")
    raw_path = raw_path_for(out)
    try:
        result = writer.write(task, names)
    except PrincipleParseError as exc:
        _atomic_write(raw_path, exc.raw)
        raise PrincipleParseError(f"{exc.message}; the raw answer is saved in {raw_path}", raw=exc.raw,
                                  hint=exc.hint) from None
    _atomic_write(raw_path, result.raw)
    principle_set = result.principle_set.model_copy(update={"name": set_name or out.stem})
    _atomic_write(out, principle_set_yaml(principle_set))
    from sami_toolkit.text.principles import load_principle_set

    load_principle_set(out)  # round-trip check: what we wrote is what `principles show` will read
    return WriterResult(principle_set=principle_set, raw=result.raw)
