"""The ``litellm`` pairwise judge: the paper's GPT-4 judge (spec §7.5, §8.3) through any litellm provider.

Per item it renders the task's judge prompt (system + user message), asks the model at the paper's settings
(temperature 0, top_p 0.9, max_tokens 200), and parses the verdict strictly
(:func:`sami_toolkit.judging.pairwise.parse_final_answer`). Around that:

* a SQLite judgment cache (:mod:`sami_toolkit.judging.cache`) answers repeated items without an API call; verdicts
  are stored, and so is an answer the strict parse cannot read ("Final Response: A and B": a tie under ``parse:
  paper``, spec §10.15), as its raw text, so a rerun with the other parse never pays twice; it comes back as a
  failed judgment with that text, and ``reask_unparsed`` asks again instead. Failed calls are never stored
  (AlpacaEval #340);
* ``concurrency`` calls run at once (asyncio + semaphore) with bounded retries that honour ``Retry-After``;
* ``max_cost`` is a hard cap: before each call the worst-case cost of that call (prompt tokens + ``max_tokens`` at
  the model's price) is reserved, and a call that could cross the cap is not started. Finished judgments stay in the
  cache, then :class:`~sami_toolkit.core.errors.BudgetExceeded` (exit 4) is raised, so a rerun with a higher cap resumes
  where this one stopped.

Cached judgments report ``cost=0.0`` (no new spend) and ``cached=True``. Every ``raw`` and ``error`` goes through
:func:`sami_toolkit.core.secrets.scrub` before it is returned or cached (issue 14 §4: a server may echo the key).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Sequence

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions, Judge
from sami_toolkit.core.records import JudgeItem, Judgment
from sami_toolkit.core.errors import BudgetExceeded, ConfigError
from sami_toolkit import Scrubber
from sami_toolkit.judging import PARSER_VERSION, parse_final_answer, render_judge_prompt, resolve_templates
from sami_toolkit.judging.cache import UNPARSED

from .client import ApiClient, ApiOptions, CallFailed, fatal_error, run_sync


_UNPARSED_ERROR = "could not parse a final answer: expected 'Final Response: A' or 'B'"


@dataclass
class _Prepared:
    index: int
    item: JudgeItem
    messages: list[dict[str, str]]
    key: str


class _JudgeFields(ComponentOptions):
    """The judge's own options; listed before the connection options in ``sami-kit judges show litellm``."""

    model: str = Field("gpt-4-0613", description="litellm model string, e.g. gpt-4-0613 (the paper's judge, "
                                                 "spec §8.3), anthropic/claude-3-5-sonnet-20240620, or "
                                                 "openai/<name> with api_base for a local server.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (spec §8.3: 0.0).")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling mass (spec §8.3: 0.9).")
    max_tokens: int = Field(200, ge=1, description="Longest judge answer in tokens (spec §8.3: 200).")
    template: str | None = Field(None, description="User-message template replacing the task's spec §7.5 "
                                                   "prompt; placeholders {query}, {constitution}, "
                                                   "{response_a}, {response_b}. It must make the judge end "
                                                   "with 'Final Response: A' or 'B'.")
    system_template: str | None = Field(None, description="System message replacing the task's default.")
    max_cost: float | None = Field(None, gt=0, description="Hard cap in USD on the new API spend of this judge "
                                                           "(all its calls in this process; cached verdicts "
                                                           "are free). A call that could cross it is not "
                                                           "started (exit 4). Needs a known price.")
    cache_path: str | None = Field(None, description="SQLite judgment cache; default "
                                                     "$SAMI_KIT_CACHE/judgments.sqlite; 'none' disables it.")
    reask_unparsed: bool = Field(False, description="Ask again for items whose cached answer the strict parse "
                                                    "could not read (e.g. a judge sampled at temperature > 0), "
                                                    "instead of re-using that answer (a failed judgment under "
                                                    "the strict parse, re-read by `parse: paper`).")


class LiteLLMJudge(Judge):
    """Pairwise judge through litellm (GPT-4 prompts of the paper; any OpenAI-compatible or hosted model)."""

    name = "litellm"

    class Options(ApiOptions, _JudgeFields):  # MRO order puts _JudgeFields' fields first
        pass

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        if self.options.template is not None:
            resolve_templates("generic", None, self.options.template, where="judges.litellm.options.template")
        self._client: ApiClient | None = None
        #: new API spend (USD) of this judge so far; ``max_cost`` caps it across every ``judge`` call
        self.spent = 0.0

    # -- helpers -------------------------------------------------------------------------------------------
    @property
    def decoding(self) -> dict[str, Any]:
        """The decoding parameters sent with every call (part of the cache key)."""
        return {"temperature": self.options.temperature, "top_p": self.options.top_p,
                "max_tokens": self.options.max_tokens}

    def client(self) -> ApiClient:
        if self._client is None:
            self._client = ApiClient(self.options, component=f"judge '{self.name}'")
        return self._client

    def _prepare(self, items: Sequence[JudgeItem]) -> list[_Prepared]:
        from sami_toolkit.judging.cache import judgment_key

        templates: dict[str, tuple[str, str]] = {}
        out = []
        for i, item in enumerate(items):
            if item.task not in templates:
                templates[item.task] = resolve_templates(item.task, self.options.system_template,
                                                         self.options.template,
                                                         where="judges.litellm.options.template")
            system_t, user_t = templates[item.task]
            system, user = render_judge_prompt(item, system_t, user_t)
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            key = judgment_key(model=self.options.model, system_template=system_t, user_template=user_t,
                               parser_version=PARSER_VERSION, decoding=self.decoding, item=item)
            out.append(_Prepared(i, item, messages, key))
        return out

    # -- judging -------------------------------------------------------------------------------------------
    def judge(self, items: Sequence[JudgeItem], *, progress: Any = None) -> list[Judgment]:
        from sami_toolkit.judging.cache import open_cache

        prepared = self._prepare(items)
        results: list[Judgment | None] = [None] * len(prepared)
        cache = open_cache(self.options.cache_path)
        clean = Scrubber()  # answers cached before a key was scrubbed come back masked
        try:
            todo: list[_Prepared] = []
            duplicates: list[tuple[_Prepared, _Prepared]] = []  # identical calls in one batch are made once
            first: dict[str, _Prepared] = {}
            for p in prepared:
                hit = cache.get(p.key) if cache is not None else None
                if hit is not None and hit.verdict == UNPARSED and self.options.reask_unparsed:
                    hit = None
                if hit is not None:  # an unparsed answer comes back failed, with its text for the caller's parse
                    unparsed = hit.verdict == UNPARSED
                    verdict = "failed" if unparsed else hit.verdict
                    results[p.index] = Judgment(id=p.item.id, verdict=verdict,  # type: ignore[arg-type]
                                                raw=clean(hit.raw), cost=0.0, cached=True,
                                                error=_UNPARSED_ERROR + " (cached answer)" if unparsed else None)
                    if progress is not None:
                        progress(1)
                elif p.key in first:
                    duplicates.append((p, first[p.key]))
                else:
                    first[p.key] = p
                    todo.append(p)
            if todo:
                client = self.client()
                run_sync(lambda: self._judge_async(client, todo, results, cache, progress))
            for dup, original in duplicates:
                done = results[original.index]
                if done is not None:
                    results[dup.index] = Judgment(id=dup.item.id, verdict=done.verdict, raw=done.raw,
                                                  error=done.error, cost=0.0, cached=done.verdict != "failed")
                    if progress is not None:
                        progress(1)
        finally:
            if cache is not None:
                cache.close()
        return [r for r in results if r is not None]

    async def _judge_async(self, client: ApiClient, todo: list[_Prepared], results: list[Judgment | None],
                           cache: Any, progress: Any) -> None:
        budget = _Budget(self, client) if self.options.max_cost is not None else None
        semaphore = asyncio.Semaphore(self.options.concurrency)
        fatal: list[str] = []
        clean = client.scrubber()

        async def one(p: _Prepared) -> None:
            async with semaphore:
                if fatal or (budget is not None and budget.exceeded):
                    return
                reserved = 0.0
                if budget is not None:
                    reserved = budget.reserve(p.messages)
                    if reserved < 0:
                        return
                try:
                    completion = await client.complete(self.options.model, p.messages, **self.decoding)
                except CallFailed as exc:
                    if budget is not None:
                        budget.release(reserved)
                    if exc.fatal:
                        fatal.append(str(exc))
                        return
                    results[p.index] = Judgment(id=p.item.id, verdict="failed", raw="",
                                                error=client.scrub(str(exc)))
                else:
                    self.spent += completion.cost
                    if budget is not None:
                        budget.release(reserved)
                    verdict = parse_final_answer(completion.text)
                    raw = clean(completion.text)
                    if verdict is None:
                        results[p.index] = Judgment(id=p.item.id, verdict="failed", raw=raw, cost=completion.cost,
                                                    error=_UNPARSED_ERROR)
                        if cache is not None and raw.strip():  # the answer itself: `parse: paper` may read it
                            cache.put(p.key, verdict=UNPARSED, raw=raw, cost=completion.cost,
                                      model=self.options.model)
                    else:
                        results[p.index] = Judgment(id=p.item.id, verdict=verdict, raw=raw, cost=completion.cost)
                        if cache is not None:
                            cache.put(p.key, verdict=verdict, raw=raw, cost=completion.cost,
                                      model=self.options.model)
                if progress is not None:
                    progress(1)

        try:
            await asyncio.gather(*(one(p) for p in todo))
        finally:
            await client.aclose()
        if fatal:
            raise fatal_error(f"judge '{self.name}'", fatal[0], self.options.api_key_env)
        if budget is not None and budget.exceeded:
            done = sum(1 for r in results if r is not None)
            exc = BudgetExceeded(
                f"judge '{self.name}': max_cost ${self.options.max_cost:g} would be crossed; stopped after "
                f"{done} of {len(results)} judgments (${budget.spent:.4f} spent by this judge)",
                hint="finished judgments are cached: rerun with a higher max_cost to judge the rest")
            exc.partial = list(results)  # type: ignore[attr-defined]
            raise exc


class _Budget:
    """Reservations against ``max_cost``: a call starts only if its worst case fits beside the calls in flight."""

    def __init__(self, judge: LiteLLMJudge, client: ApiClient) -> None:
        self.judge = judge
        self.client = client
        self.cap = float(judge.options.max_cost or 0.0)
        self.in_flight = 0.0
        self.exceeded = False
        if client.price_of(judge.options.model, 1000, 1000) in (None, 0.0):
            raise ConfigError(f"judges.litellm.options.max_cost: litellm has no price for model "
                              f"'{judge.options.model}', so the cap cannot be enforced",
                              hint="set input_cost_per_token and output_cost_per_token")

    def reserve(self, messages: list[dict[str, str]]) -> float:
        """The reserved worst-case cost, or ``-1`` (and ``exceeded``) when the call would not fit."""
        model = self.judge.options.model
        worst = self.client.price_of(model, self.client.count_tokens(model, messages),
                                     self.judge.options.max_tokens) or 0.0
        if self.spent + self.in_flight + worst > self.cap:
            self.exceeded = True
            return -1.0
        self.in_flight += worst
        return worst

    @property
    def spent(self) -> float:
        return self.judge.spent

    def release(self, reserved: float) -> None:
        """A call finished (its actual cost is already in ``judge.spent``): drop its reservation."""
        self.in_flight -= reserved
