"""Responses for evaluation: prompts built from templates and constitutions, sampled with a Sampler component,
post-processed, and optionally cached on disk.

Shared by the evaluators (``mi``, ``mi-heldout``, ``win-rate``) and ``eval compare``, which is why it sits below
both of them: a comparison and an evaluator must build a prompt the same way.  Heavy imports (the tokenizer, rich)
happen inside the functions.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.core.components import Sampler
    from sami_toolkit.core.records import Query
    from sami_toolkit.text.principles import PrincipleSet
    from sami_toolkit.text.prompts import PromptTemplates


# ------------------------------------------------------------------------------------------------ prompts
def resolve_templates(task: str, templates: "PromptTemplates | None") -> "PromptTemplates":
    """``templates`` when given, else the task's built-in templates."""
    if templates is not None:
        return templates
    from sami_toolkit.text.prompts import get_templates

    return get_templates(task)


def positive_constitution(pset: "PrincipleSet", names: Sequence[str] | None = None) -> str:
    """The all-definition constitution (spec §8.2), rendered as a numbered list."""
    from sami_toolkit.text.constitutions import Constitution

    chosen = list(names) if names else [p.name for p in pset.principles]
    for name in chosen:
        pset.get(name)
    return Constitution.positive(chosen).render(pset)


def shuffled(text: str, rng: random.Random, enabled: bool = True) -> str:
    """Principle order shuffled (spec §2.8), or the text unchanged."""
    if not enabled:
        return text
    from sami_toolkit.text.constitutions import shuffle_constitution

    return shuffle_constitution(text, rng)


def generation_prompts(templates: "PromptTemplates", queries: Sequence[Query], constitutions: Sequence[str],
                       *, template: str | None = None, instruct: bool = False) -> list[str]:
    """One generation prompt per (query, constitution text)."""
    from sami_toolkit.text.prompts import build_prompt, format_instruct_question, format_question

    tmpl = template if template is not None else templates.generation
    fmt = format_instruct_question if instruct else format_question
    return [build_prompt(tmpl, constitution=c, question=fmt(templates, q.text)) for q, c in zip(queries, constitutions)]


def chat_prompts(model: str, messages: Sequence[str]) -> tuple[list[str], str | None]:
    """Wrap user messages in ``model``'s chat template (spec §7.4: the instruct baseline is prompted through
    its own chat template). Returns the prompts and a note when the raw messages had to be used instead.

    The template's leading BOS text (``<s>``) is removed when the tokenizer adds a BOS itself, as the paper's
    code did before passing the string to vLLM (spec §7.4): every sampler tokenises a prompt with its special
    tokens, so a kept ``<s>`` became a second BOS and the instruct model saw ``<s><s>[INST]``."""
    from sami_toolkit.core.errors import InfrastructureError
    from sami_toolkit.models.loading import load_tokenizer, strip_leading_bos

    try:
        tokenizer = load_tokenizer(model)
    except InfrastructureError as exc:
        return list(messages), f"chat template of '{model}' unavailable ({exc.message}); raw instruct prompts used"
    if not getattr(tokenizer, "chat_template", None):
        return list(messages), f"'{model}' has no chat template; raw instruct prompts used"
    return [strip_leading_bos(tokenizer, tokenizer.apply_chat_template([{"role": "user", "content": m}],
                                                                       tokenize=False, add_generation_prompt=True))
            for m in messages], None


# ------------------------------------------------------------------------------------------------ sampling
#: outside a terminal, a progress line each time another quarter of the work is done ...
PLAIN_PROGRESS_STEP = 0.25
#: ... or when this many seconds passed since the last line (a slow CPU evaluation still shows it is alive)
PLAIN_PROGRESS_SECONDS = 30.0


class PlainProgress:
    """Progress as plain lines (``MI: scoring [ckpt]: 48/96``) for a CI log, a file or a pipe, where a rich bar
    draws nothing: without them a long evaluation looked hung.  A line per quarter of the work, at least every
    :data:`PLAIN_PROGRESS_SECONDS`, and one when the work is done."""

    def __init__(self, label: str, total: int, console: Any) -> None:
        import time

        self.label, self.total, self.console = label, total, console
        self.done = 0
        self._clock = time.monotonic
        self._last = self._clock()
        self._next = total * PLAIN_PROGRESS_STEP
        self._finished = False

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.total <= 0 or self._finished:
            return
        now = self._clock()
        if self.done >= self.total or self.done >= self._next or now - self._last >= PLAIN_PROGRESS_SECONDS:
            self._finished = self.done >= self.total
            self.console.print(f"{self.label}: {min(self.done, self.total)}/{self.total}"
                               + (" done" if self._finished else ""), markup=False, highlight=False)
            self._last = now
            step = self.total * PLAIN_PROGRESS_STEP
            while self._next <= self.done:
                self._next += step


def with_progress(fn: Callable[[Callable[[int], None]], Any], total: int, label: str) -> Any:
    """Run ``fn(progress_callback)`` under the shared progress bar on stderr, erased when done; when stderr is not
    a terminal, with :class:`PlainProgress` lines instead."""
    from sami_toolkit.core.consoles import console, progress_bar

    out = console()
    if not out.is_terminal:
        return fn(PlainProgress(label, total, out).advance)
    with progress_bar(out, transient=True) as bar:
        task_id = bar.add_task(label, total=total)
        return fn(lambda n=1: bar.advance(task_id, n))


def generate(sampler: "Sampler", model: str, prompts: Sequence[str], *, task: str, templates: "PromptTemplates",
             label: str = "generating", postprocess: bool = True) -> list[str]:
    """Sample one response per prompt with rich progress on stderr, then post-process (spec §2.7)."""
    from sami_toolkit.text.postprocess import postprocess_response

    raw = with_progress(lambda cb: sampler.generate(model, list(prompts), progress=cb), len(prompts), label)
    if len(raw) != len(prompts):
        from sami_toolkit.core.errors import InfrastructureError

        raise InfrastructureError(f"sampler '{sampler.name}' returned {len(raw)} responses for {len(prompts)} prompts")
    return [postprocess_response(task, r, templates) for r in raw] if postprocess else list(raw)


def cached_generate(cache_dir: Path, sampler: "Sampler", model: str, prompts: Sequence[str], *, task: str,
                    templates: "PromptTemplates", label: str, postprocess: bool = True) -> list[str]:
    """:func:`generate` with a file cache keyed by (model, sampler name and options, prompts): the base model's
    responses are identical at every iteration, so they are sampled once (spec §8.2 uses greedy decoding)."""
    from sami_toolkit.core.io import atomic_write_jsonl, hash_data, read_jsonl

    options = sampler.options.model_dump() if hasattr(sampler.options, "model_dump") else {}
    key = hash_data(model, sampler.name, options, list(prompts), postprocess)
    path = Path(cache_dir) / f"responses-{key}.jsonl"
    if path.is_file():
        rows = read_jsonl(path)
        if len(rows) == len(prompts):
            return [r["response"] for r in rows]
    responses = generate(sampler, model, prompts, task=task, templates=templates, label=label,
                         postprocess=postprocess)
    atomic_write_jsonl(path, [{"prompt": p, "response": r, "model": model} for p, r in zip(prompts, responses)])
    return responses


# ------------------------------------------------------------------------------------------------ lengths
def token_lengths(texts: Sequence[str], tokenizer_ref: str | None) -> tuple[list[int], str]:
    """Response lengths and their unit. With a tokenizer: ``len(tokenizer.encode(text))`` (special tokens
    included, as the paper counted with BOS, spec §8.3); without: whitespace words."""
    if tokenizer_ref is None:
        return [len(t.split()) for t in texts], "words"
    from sami_toolkit.models.loading import load_tokenizer

    tok = load_tokenizer(tokenizer_ref)
    return [len(tok.encode(t)) for t in texts], f"tokens ({tokenizer_ref})"
