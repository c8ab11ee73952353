"""Turn raw generations into responses, and decide which contrastive pairs to keep (spec §2.7).

A base model keeps writing after its answer (a new ``Human:`` turn, a ``###`` section), and some generations are
template echoes (``[insert summary here]``) or refusals.  The paper's code cuts responses at those markers and
drops a query's pair when any response looks broken, because one bad response poisons the whole C×C matrix of
that query.  This module reproduces those rules per task and makes every filter an option.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from pydantic import BaseModel, ConfigDict, Field

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.text.prompts import normalize_task

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.text.prompts import PromptTemplates

#: where each task's raw continuation is cut (spec §2.7); the templates' ``stop`` strings are added to these
CUT_MARKERS: dict[str, tuple[str, ...]] = {
    # [R] splits at "Human: "; "Human:" also catches a turn cut right after the colon by a stop string
    "tldr": ("Human:", "###"),
    "hh-rlhf": ("\n\nHuman", "###"),
    "generic": (),
}


class FilterOptions(BaseModel):
    """Which generated pairs to drop before training (spec §2.7).  Defaults per task: :func:`default_filter_options`."""

    model_config = ConfigDict(extra="forbid")

    drop_substrings: list[str] = Field(default_factory=list, description="Drop the pair if any response contains "
                                       "one of these (case-sensitive), e.g. template echoes like '[insert'.")
    drop_prefixes: list[str] = Field(default_factory=list, description="Drop the pair if any response starts with "
                                     "one of these (case-sensitive, leading whitespace ignored): the paper's HH "
                                     "text removed responses that \"started with 'I'm sorry'\" (spec §2.7, §10.11); "
                                     "its code dropped any 'sorry' instead (drop_substrings).")
    require_positive_period: bool = Field(default=False, description="Drop the pair unless the positive response "
                                          "ends with '.' (the paper's TL;DR rule; note it also drops every "
                                          "response cut off at max_new_tokens).")
    require_distinct: bool = Field(default=False, description="Drop the pair if two responses are identical "
                                   "(they carry no contrastive signal).")
    max_chars: int | None = Field(default=None, ge=1, description="Drop the pair if a response is longer than "
                                  "this many characters (None: no limit).")


def default_filter_options(task: str, *, cot: bool = False) -> FilterOptions:
    """The paper's filters for ``task`` (``cot=True``: the Exp. 3 chain-of-thought rules)."""
    task = normalize_task(task)
    if task == "tldr" and cot:  # [D] generate_diverse.py
        return FilterOptions(drop_substrings=["The assistant", "sorry", "Response", "[insert", "[]", "]", "The post",
                                              "principles", "constitution", "summarization"],
                             require_positive_period=True, require_distinct=True)
    if task == "tldr":  # [R] generate.py
        return FilterOptions(drop_substrings=["[insert", "[]", "]", "Response"], require_positive_period=True,
                             require_distinct=True)
    if task == "hh-rlhf":  # [D] hh-rlhf/helpers.py: no period or equality check
        return FilterOptions(drop_substrings=["The assistant", "sorry", "Response", "[insert", "]"])
    # generic: only template echoes and exact duplicates (not from the paper)
    return FilterOptions(drop_substrings=["[insert"], require_distinct=True)


def cut_at_stop(text: str, markers: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any marker (stop strings, section breaks)."""
    end = len(text)
    for marker in markers:
        if marker:
            pos = text.find(marker)
            if pos != -1:
                end = min(end, pos)
    return text[:end]


def postprocess_response(task: str, raw: str, templates: "PromptTemplates", *, cot: bool = False,
                         instruct: bool = False, add_prefix: bool = True) -> str:
    """The stored response for one raw generation (spec §2.7).

    - ``cot``: the text after the first ``"Summary:"`` up to the first blank line; ``""`` if there is none.
    - ``instruct`` (the instruct-model baseline, spec §7.4): no prefix is put back; tldr cuts only at ``"###"``,
      hh uses the HH cut points.
    - otherwise: cut at the task's markers (tldr ``"Human:"``/``"###"``, hh ``"\n\nHuman"``/``"###"``) and the
      templates' ``stop`` strings, strip, and put ``templates.response_prefix`` back in front (``"The post "`` for
      tldr, whose generation prompt pre-fills it; ``add_prefix=False`` when the prompt had no prefill, e.g. a
      generation from the training prompt).  An empty continuation stays ``""`` (no bare prefix), so the
      ``"empty"`` filter catches it.
    """
    task = normalize_task(task)
    if cot:
        parts = raw.split("Summary:", 1)
        if len(parts) < 2:
            return ""
        return parts[1].strip().split("\n\n")[0].strip()
    if instruct:
        markers: tuple[str, ...] = ("###",) if task == "tldr" else (*CUT_MARKERS[task], *templates.stop)
    else:
        markers = (*CUT_MARKERS[task], *templates.stop)
    body = cut_at_stop(raw, markers).strip()
    if not body:
        return ""
    if instruct or not add_prefix:
        return body
    return (templates.response_prefix + body).strip()


#: which template samples responses (``sampling_prompt`` of a run, ``prompt`` of the evaluators): the example-format
#: generation prompt (Exp. 1–2), the chain-of-thought prompt (Exp. 3 CoT, spec §7.2) or the plain training prompt
#: (Exp. 3 without CoT: no prefill, spec §7.2, §10.20)
SAMPLING_PROMPTS: tuple[str, ...] = ("generation", "generation_cot", "training")


def postprocess_sampled(task: str, raw: str, templates: "PromptTemplates", prompt: str = "generation") -> str:
    """The stored response for a generation sampled with template ``prompt`` (one of :data:`SAMPLING_PROMPTS`):
    ``generation_cot`` keeps only the final answer after ``"Summary:"`` (the reasoning is discarded, spec §2.7);
    ``training`` has no prefill, so no ``"The post "`` is put back (spec §7.2: the response is only stripped)."""
    if prompt not in SAMPLING_PROMPTS:
        raise ConfigError(f"unknown sampling prompt '{prompt}'; choose one of: {', '.join(SAMPLING_PROMPTS)}")
    if prompt == "generation_cot":
        return postprocess_response(task, raw, templates, cot=True)
    return postprocess_response(task, raw, templates, add_prefix=prompt == "generation")


def filter_pair(task: str, responses: Sequence[str], options: FilterOptions,
                positive_index: int | None = 0) -> str | None:
    """``None`` to keep a query's responses, or why to drop them: ``"empty"``, ``"contains:<substring>"``,
    ``"starts_with:<prefix>"``, ``"too_long"``, ``"positive_no_period"`` or ``"identical"`` (checked in that order).

    ``"starts_with:<prefix>"`` (``drop_prefixes``) is checked right after the substrings.

    ``positive_index`` is the position of the all-definition response (``None`` when there is none, e.g. the
    complement strategy), used by ``require_positive_period``.
    """
    normalize_task(task)  # validate the name; the rules themselves come from ``options``
    for response in responses:
        if not response.strip():
            return "empty"
    for substring in options.drop_substrings:
        if any(substring in response for response in responses):
            return f"contains:{substring}"
    for prefix in options.drop_prefixes:
        if any(response.lstrip().startswith(prefix) for response in responses):
            return f"starts_with:{prefix}"
    if options.max_chars is not None and any(len(r) > options.max_chars for r in responses):
        return "too_long"
    if options.require_positive_period and positive_index is not None:
        if not 0 <= positive_index < len(responses):
            raise ConfigError(f"positive_index {positive_index} is out of range for {len(responses)} responses")
        if not responses[positive_index].rstrip().endswith("."):
            return "positive_no_period"
    if options.require_distinct and len({r.strip() for r in responses}) < len(responses):
        return "identical"
    return None
