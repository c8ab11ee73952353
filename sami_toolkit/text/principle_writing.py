"""Principle writing (spec §5.1): the task, the seed prompt, asking (and re-asking) a writer, and saving the set.

The paper asked a model (claude-opus, mistral-7b-instruct) to define two named principles for a task and to write
one antithesis per principle "that I can use as a contrastive prompt" (spec §5.1, paper A.12). This module:

* renders that seed prompt for any number ``k`` of principles (:func:`writer_prompt`);
* accepts as the task a known task name (``tldr``, ``hh-rlhf``; the prompt then says what the task is in the
  paper's words) or a description in words (``"answer medical questions"``); a single word that is no known task
  is a :class:`~sami_toolkit.core.errors.ConfigError` (exit 2) with a did-you-mean, before anything is asked
  (:func:`writer_task`);
* parses and validates each answer with :mod:`sami_toolkit.text.principle_parsing` (every principle needs a
  non-empty definition and antithesis, and all of them must differ: an antithesis that repeats its definition
  gives SAMI nothing to contrast, spec §5.2); anything wrong is a ``PrincipleParseError`` naming it;
* asks again (up to the writer's ``attempts``, the retry prompt naming what was wrong: a greedy writer would
  otherwise repeat itself), then gives up with :class:`WriterOutputError` (exit 4: the writer's model failed);
* writes the validated set as YAML plus the raw answers beside it (:func:`write_principles`), each as it arrives
  and also when every attempt fails, so nothing the (possibly paid) writer returned is lost.

Writers that turn a prompt into text subclass :class:`PromptedWriter` and implement only :meth:`complete`.
"""

from __future__ import annotations

import os
import re
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from sami_toolkit.core.components import PrincipleWriter
from sami_toolkit.core.records import WriterResult
from sami_toolkit.core.errors import ConfigError, InfrastructureError
from sami_toolkit.core.io import atomic_write_text
from sami_toolkit.core.secrets import scrub
from sami_toolkit.text.principle_parsing import PrincipleParseError, display_name, parse_principles, principle_problems

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.text.principles import PrincipleSet

_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                 9: "nine", 10: "ten"}


class WriterOutputError(InfrastructureError):
    """Every answer of a principle writer was unusable (exit 4: the writer's model failed, not the user's input);
    ``raws`` keeps each attempt's answer, ``raw`` the last one."""

    def __init__(self, message: str, *, raws: Sequence[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.raws = list(raws)

    @property
    def raw(self) -> str:
        return self.raws[-1] if self.raws else ""


#: how a known task is put into the seed prompt's "a constitution for how to {task}" (tldr: the paper's wording,
#: spec §5.1; hh-rlhf: the paper asked for helpful and harmless principles)
TASK_DESCRIPTIONS = {"tldr": "summarize reddit posts", "hh-rlhf": "respond to a human as a helpful and harmless AI "
                                                                  "assistant"}


def writer_task(task: str) -> tuple[str, str]:
    """``(task of the set, the seed prompt's task description)`` for ``--task``.

    A known task name or alias (``tldr``, ``hh``, ``hh-rlhf``) gives its canonical name and the description above;
    words (``"summarize reddit posts"``) are a free-form task, kept as they are. A single word that is no known task
    (``tldrr``, ``summarise``) is a :class:`ConfigError` naming the known tasks, before the writer is asked.
    """
    import difflib

    from sami_toolkit.text.prompts import TASK_ALIASES, TASK_TEMPLATES

    text = task.strip()
    if not text:
        raise ConfigError("--task is empty: describe the task, e.g. --task 'summarize reddit posts'")
    if len(text.split()) > 1:
        return text, text
    name = TASK_ALIASES.get(text.lower(), text.lower())
    hint = "or describe the task in a few words, e.g. --task 'summarize reddit posts'"
    if name not in TASK_TEMPLATES:
        close = difflib.get_close_matches(name, [*TASK_DESCRIPTIONS, *TASK_ALIASES], n=1, cutoff=0.5)
        mean = f" Did you mean '{TASK_ALIASES.get(close[0], close[0])}'?" if close else ""
        raise ConfigError(f"--task: unknown task '{text}'.{mean} Known tasks: {', '.join(TASK_DESCRIPTIONS)}",
                          hint=hint)
    if name not in TASK_DESCRIPTIONS:
        raise ConfigError(f"--task {name}: '{name}' is the template for any task, so the writer would not learn what "
                          f"the principles are for (known tasks: {', '.join(TASK_DESCRIPTIONS)})",
                          hint="describe the task in a few words, e.g. --task 'answer medical questions'")
    return name, TASK_DESCRIPTIONS[name]


def _describe(task: str) -> str:
    """The seed prompt's wording for ``task``: a known task's description, else the text itself."""
    from sami_toolkit.text.prompts import TASK_ALIASES

    key = task.strip().lower()
    return TASK_DESCRIPTIONS.get(TASK_ALIASES.get(key, key), task)


# ------------------------------------------------------------------------------------------------- prompt
def writer_prompt(task: str, names: Sequence[str], *, example_start: str | None = None) -> str:
    """The seed prompt of spec §5.1 (paper A.12) generalised from two principles to ``k``.

    For ``k = 2`` the wording is the paper's ("both principles", "two antitheses"). The format block also shows the
    ``Antitheses:`` header (the paper left the antitheses' layout to the model), so answers parse mechanically.
    A known task name (``tldr``) is put in words (``summarize reddit posts``, see :data:`TASK_DESCRIPTIONS`).
    ``example_start`` is the sentence opening shown in the format ("Summaries should be..." for summarisation
    tasks, as in the paper; "Responses should be..." otherwise).
    """
    task = _describe(task)
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


# ------------------------------------------------------------------------------------------------- writers
#: answers a prompted writer is asked for before it gives up (its ``attempts`` option)
DEFAULT_ATTEMPTS = 2


def attempts_option() -> Any:
    """The ``attempts`` option of every prompted writer (one definition, shared by hf and litellm)."""
    from pydantic import Field

    return Field(DEFAULT_ATTEMPTS, ge=1, le=10,
                 description="Answers to ask for before giving up (exit 4) when an answer is unusable (a missing, "
                             "empty or repeated definition or antithesis); each retry tells the model what was "
                             "wrong. Every answer is saved beside --out.")


def retry_prompt(prompt: str, problems: Sequence[str]) -> str:
    """The seed prompt followed by what was wrong with the last answer: a greedy (or temperature-0) writer would
    otherwise give the same answer again."""
    return (f"{prompt}\n\nYour previous answer could not be used: {'; '.join(problems)}. Answer again in exactly "
            "the format above: a definition for every principle, then 'Antitheses:' and, for every principle, an "
            "antithesis that says the opposite of its definition.")


class PromptedWriter(PrincipleWriter):
    """A principle writer that sends the spec §5.1 seed prompt to a model: subclasses implement :meth:`complete`
    (and may offer ``attempts: int = attempts_option()`` in their options)."""

    @abstractmethod
    def complete(self, prompt: str) -> str:
        """Return the model's answer to ``prompt`` (errors: :class:`~sami_toolkit.core.errors.InfrastructureError`)."""

    def writer_label(self) -> str:
        """What goes in the set's ``writer`` field: the model name."""
        return str(getattr(self.options, "model", self.name))

    def write(self, task: str, principles: Sequence[str], *,
              on_answer: Callable[[int, str], None] | None = None) -> WriterResult:
        """Ask up to ``attempts`` times until an answer parses and validates (:func:`parse_principles`); raises
        :class:`WriterOutputError` (exit 4) when none does. ``on_answer(attempt, raw)`` sees every answer as it
        arrives (:func:`write_principles` saves it). Answers are scrubbed of secrets before anything sees them."""
        attempts = max(1, int(getattr(self.options, "attempts", DEFAULT_ATTEMPTS)))
        prompt = writer_prompt(task, principles)
        raws: list[str] = []
        problems: list[str] = []
        message = ""
        for attempt in range(1, attempts + 1):
            raw = scrub(self.complete(prompt if attempt == 1 else retry_prompt(prompt, problems)))
            raws.append(raw)
            if on_answer is not None:
                on_answer(attempt, raw)
            try:
                principle_set = parse_principles(raw, principles, task=task, writer=self.writer_label(),
                                                 source=f"principle writer '{self.name}' (spec §5.1 seed prompt)")
            except PrincipleParseError as exc:
                problems, message = exc.problems, exc.message
                continue
            return WriterResult(principle_set=principle_set, raw=raw)
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        raise WriterOutputError(f"principle writer '{self.name}' gave no usable answer in {tries}: {message}",
                                raws=raws, hint=_WRITER_HINT)


_WRITER_HINT = ("ask again with more attempts (-o attempts=4), use a stronger model, or turn the saved raw answer "
                "into a principle set by hand")


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


def raw_path_for(out: str | os.PathLike, attempt: int | None = None) -> Path:
    """Where the raw answer is kept: ``my-principles.yaml`` -> ``my-principles.raw.txt`` (the last answer: the one
    the set was made from); a rejected earlier answer -> ``my-principles.attempt-1.raw.txt``."""
    return Path(out).with_suffix(".raw.txt" if attempt is None else f".attempt-{attempt}.raw.txt")


def _saved_where(out: Path, answers: int) -> str:
    if answers <= 1:
        return f"the raw answer is saved in {raw_path_for(out)}"
    earlier = ", ".join(str(raw_path_for(out, n)) for n in range(1, answers))
    return f"the raw answers are saved in {raw_path_for(out)} (the last) and {earlier}"


def principle_set_yaml(principle_set: "PrincipleSet") -> str:
    import yaml

    data = principle_set.model_dump(exclude_none=True)
    header = ("# Principle set written by `sami-kit principles write` (spec §5.1 seed prompt).\n"
              "# Review it before training: writers can be wrong. The raw answer is kept beside this file.\n")
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100000)


def write_principles(writer: PrincipleWriter, task: str, names: Sequence[str], out: str | os.PathLike, *,
                     set_name: str | None = None, overwrite: bool = False) -> WriterResult:
    """Ask ``writer`` for principles, validate them, write ``out`` (YAML) and the raw answers beside it.

    ``task`` is checked first (:func:`writer_task`: a known task name or a description in words; exit 2). Every
    answer is saved as it arrives: the last as ``<out stem>.raw.txt``, rejected earlier ones as
    ``<out stem>.attempt-<n>.raw.txt``. When no answer is usable, :class:`WriterOutputError` (exit 4) names the
    saved files and ``out`` is not written.
    """
    out = Path(out)
    names = check_names(names)
    set_task, description = writer_task(task)
    if out.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"--out {out}: the principle set is YAML; use a .yaml file name")
    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out} already exists", hint="pass --force to overwrite it")
    import glob

    for stale in out.parent.glob(f"{glob.escape(out.stem)}.attempt-*.raw.txt"):  # a previous run's rejects
        stale.unlink(missing_ok=True)
    answers: list[str] = []

    def save(attempt: int, raw: str) -> None:
        if answers:  # the previous answer was rejected: it keeps its attempt number
            atomic_write_text(raw_path_for(out, len(answers)), answers[-1])
        answers.append(raw)
        atomic_write_text(raw_path_for(out), raw)

    try:
        if isinstance(writer, PromptedWriter) and type(writer).write is PromptedWriter.write:
            result = writer.write(description, names, on_answer=save)
        else:
            result = _checked(writer, writer.write(description, names), names, save)
    except PrincipleParseError as exc:  # a writer that parses its answers itself
        save(len(answers) + 1, scrub(exc.raw))
        raise WriterOutputError(f"principle writer '{writer.name}': {exc.message}; {_saved_where(out, 1)}",
                                raws=answers, hint=_WRITER_HINT) from None
    except WriterOutputError as exc:
        raise WriterOutputError(f"{exc.message}; {_saved_where(out, len(answers))}", raws=exc.raws,
                                hint=exc.hint) from None
    if not answers:
        save(1, scrub(result.raw))
    principle_set = result.principle_set.model_copy(update={"name": set_name or out.stem, "task": set_task})
    atomic_write_text(out, principle_set_yaml(principle_set))
    from sami_toolkit.text.principles import load_principle_set

    load_principle_set(out)  # round-trip check: what we wrote is what `principles show` will read
    return WriterResult(principle_set=principle_set, raw=answers[-1])


def _checked(writer: PrincipleWriter, result: WriterResult, names: Sequence[str],
             save: Callable[[int, str], None]) -> WriterResult:
    """Validate a set from a writer that is not a :class:`PromptedWriter` (it cannot be re-prompted): saved, then
    a :class:`WriterOutputError` when a principle is missing or :func:`principle_problems` rejects it."""
    save(1, scrub(result.raw))
    got = {p.name: p for p in result.principle_set.principles}
    problems = [f"missing principle '{n}'" for n in names if n not in got]
    problems += principle_problems([(n, got[n].definition, got[n].antithesis) for n in names if n in got])
    if problems:
        raise WriterOutputError(f"principle writer '{writer.name}' returned an unusable set: {'; '.join(problems)}",
                                raws=[result.raw], hint=_WRITER_HINT)
    return result
