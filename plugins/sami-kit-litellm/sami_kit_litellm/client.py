"""One bounded, concurrent way to call a chat model through ``litellm.acompletion``.

Shared by the judge, the principle writer and the sampler so that retries, timeouts, keys and costs behave the same
everywhere:

* **Keys** are read from the environment variable named by ``api_key_env`` (else the provider's default variable,
  e.g. ``OPENAI_API_KEY``); the key is never an option. Every error message this module produces goes through
  :func:`sami_toolkit.core.secrets.scrub`, which masks the configured key *and* every credential variable of the
  environment (whichever one a transport actually sent), so a server that echoes the ``Authorization`` header
  cannot put a key into logs, caches or reports.
* **Retries** are bounded (``max_retries``) with exponential backoff that honours the server's ``Retry-After``
  (anchors-eval §10 #5: unbounded retries left runs stuck for days). litellm's and the OpenAI SDK's own retries are
  switched off so that this loop is the only one.
* **Errors** are sorted: authentication / unknown-model errors are *fatal* (every call would fail, exit 4); a bad
  request fails only that call; rate limits, timeouts, 5xx and garbage bodies are retried.
* **Cost** comes from litellm's cost map (``completion_cost``), or from ``input_cost_per_token`` /
  ``output_cost_per_token`` options for models litellm has no price for.
* **Transport.** litellm costs a few milliseconds of client CPU per call (routing, logging objects, cost lookup).
  Against a hosted API that is noise next to seconds of latency, but a self-hosted OpenAI-compatible judge (vLLM,
  llama.cpp) answers in ~100 ms, and then litellm alone caps the rate well below what the server gives (measured:
  0.26-0.5 of the ideal rate at 32 calls in flight on a 2-core machine). So with ``transport: auto`` (default) a
  model that litellm routes to its ``openai`` provider *and* that has an ``api_base`` is called over the OpenAI
  chat-completions protocol directly, with aiohttp (same retries, timeouts, error classes and key handling);
  everything else goes through litellm, which also keeps handling the quirks of OpenAI's own models (parameter
  renames for reasoning models).
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Awaitable, Callable, Literal, TypeVar

from pydantic import Field

from sami_toolkit import Scrubber, remember_secret, scrub
from sami_toolkit.core.components import ComponentOptions
from sami_toolkit.core.errors import ConfigError, InfrastructureError

T = TypeVar("T")


class ApiOptions(ComponentOptions):
    """Connection options shared by every litellm component."""

    api_base: str | None = Field(None, description="Base URL of the API, e.g. http://localhost:8000/v1 for an "
                                                   "OpenAI-compatible server (vLLM, llama.cpp); default: the "
                                                   "provider's own.")
    api_key_env: str | None = Field(None, description="Name of the environment variable holding the API key "
                                                      "(e.g. OPENAI_API_KEY). The key itself is never an option "
                                                      "and is never logged or cached. Default: litellm's "
                                                      "provider default variable.")
    timeout: float = Field(60.0, gt=0, description="Seconds to wait for one API call before it counts as failed "
                                                   "(and is retried).")
    max_retries: int = Field(3, ge=0, le=20, description="Retries per call after rate limits, timeouts, server "
                                                         "errors or unreadable answers (bounded: then the call "
                                                         "fails).")
    retry_backoff: float = Field(2.0, ge=0, description="First backoff in seconds; doubles at each retry (with "
                                                        "jitter). A server's Retry-After header takes precedence.")
    max_backoff: float = Field(120.0, ge=0, description="Longest single wait between retries, in seconds "
                                                        "(also caps Retry-After).")
    concurrency: int = Field(16, ge=1, le=1024, description="Calls in flight at once.")
    transport: Literal["auto", "litellm", "openai"] = Field(
        "auto", description="How calls are made. auto: straight HTTP to an OpenAI-compatible server (litellm "
                            "provider 'openai' with api_base set; several times less client CPU per call), litellm "
                            "otherwise. litellm: always litellm. openai: always straight HTTP to api_base (the "
                            "server must speak the OpenAI chat-completions protocol).")
    input_cost_per_token: float | None = Field(None, ge=0, description="Price per prompt token in USD, for models "
                                                                       "litellm has no price for (self-hosted, "
                                                                       "new snapshots). Overrides litellm's map.")
    output_cost_per_token: float | None = Field(None, ge=0, description="Price per completion token in USD (see "
                                                                        "input_cost_per_token).")


@dataclass
class Completion:
    text: str
    cost: float
    prompt_tokens: int
    completion_tokens: int


class _HttpError(Exception):
    """An HTTP error answer of the direct OpenAI-protocol transport."""

    #: the error class names litellm and the OpenAI SDK use, so messages read the same over either transport
    KINDS = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError", 404: "NotFoundError",
             408: "APITimeoutError", 413: "BadRequestError", 422: "UnprocessableEntityError", 429: "RateLimitError"}

    def __init__(self, status: int, body: str, retry_after: str | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body
        self.kind = self.KINDS.get(status, "InternalServerError" if status >= 500 else "APIStatusError")
        self.headers = {"retry-after": retry_after} if retry_after is not None else {}


class CallFailed(Exception):
    """One call failed after its retries (``fatal``: every further call would fail too)."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


def import_litellm() -> Any:
    """Import litellm quietly: local cost map (no network), no debug banners, no telemetry."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import logging

    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return litellm


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, also when an event loop already runs in this thread
    (notebooks): then it runs in a helper thread with its own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from a ``Retry-After`` header on a litellm/OpenAI error (delta-seconds or an HTTP date)."""
    headers: Any = getattr(exc, "litellm_response_headers", None) or getattr(exc, "headers", None)
    if not headers:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = None
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(str(value)).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class ApiClient:
    """Calls ``model`` with the connection ``options`` (an :class:`ApiOptions`)."""

    def __init__(self, options: ApiOptions, *, component: str) -> None:
        self.options = options
        self.component = component
        self._key: str | None = None
        if options.api_key_env:
            key = os.environ.get(options.api_key_env)
            if not key:
                raise ConfigError(f"{component}: api_key_env '{options.api_key_env}' names an environment variable "
                                  "that is not set",
                                  hint=f"export {options.api_key_env}=... (the key is never put in a config file)")
            self._key = key
            remember_secret(key)  # masked by every later scrub in this process, whatever the variable's name
        self._sessions: dict[int, Any] = {}  # one aiohttp session per event loop (sessions are loop-bound)
        self._routes: dict[str, str | None] = {}  # model -> name sent over the direct transport; None: litellm
        self._unit_prices: dict[str, tuple[float, float] | None] = {}  # model -> USD per prompt/completion token

    # -- secrets -------------------------------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        """``text`` with every key this process may send masked (error messages can echo request details)."""
        return scrub(text, (self._key,))

    def scrubber(self) -> Scrubber:
        """:meth:`scrub` with the environment read once, for a batch of answers."""
        return Scrubber((self._key,))

    # -- pricing -------------------------------------------------------------------------------------------
    def has_custom_price(self) -> bool:
        return self.options.input_cost_per_token is not None or self.options.output_cost_per_token is not None

    def price_of(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for a call of this size, or ``None`` when the model has no known price."""
        if self.has_custom_price():
            return (prompt_tokens * (self.options.input_cost_per_token or 0.0)
                    + completion_tokens * (self.options.output_cost_per_token or 0.0))
        if model not in self._unit_prices:  # prices are per token: look the model up once, not per call
            litellm = import_litellm()
            try:
                unit = litellm.cost_per_token(model=model, prompt_tokens=1, completion_tokens=1)
                self._unit_prices[model] = (float(unit[0]), float(unit[1]))
            except Exception:  # noqa: BLE001 - unknown model: no price
                self._unit_prices[model] = None
        unit_prices = self._unit_prices[model]
        if unit_prices is None:
            return None
        return prompt_tokens * unit_prices[0] + completion_tokens * unit_prices[1]

    def count_tokens(self, model: str, messages: list[dict[str, str]]) -> int:
        litellm = import_litellm()
        try:
            return int(litellm.token_counter(model=model, messages=messages))
        except Exception:  # noqa: BLE001 - a rough count is enough for an upper bound
            return sum(len(m.get("content", "")) for m in messages) // 2 + 8

    def _cost(self, model: str, response: Any, usage: tuple[int, int]) -> float:
        if self.has_custom_price():
            return float(self.price_of(model, *usage) or 0.0)
        hidden = getattr(response, "_hidden_params", {}) or {}
        if hidden.get("response_cost") is not None:  # litellm already priced it (saves a second cost-map lookup)
            return float(hidden["response_cost"])
        litellm = import_litellm()
        try:
            return float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # noqa: BLE001 - an unpriced model costs "unknown", reported as 0
            return 0.0

    # -- calling -------------------------------------------------------------------------------------------
    def _backoff(self, attempt: int, exc: BaseException) -> float:
        retry_after = _retry_after(exc)
        if retry_after is not None:
            return min(retry_after, self.options.max_backoff)
        base = self.options.retry_backoff * (2 ** attempt)
        return min(self.options.max_backoff, base * (0.75 + 0.5 * random.random()))

    # -- transport -----------------------------------------------------------------------------------------
    def openai_model_name(self, model: str) -> str | None:
        """The model name to send over the direct OpenAI-protocol transport, or ``None`` when ``model`` goes
        through litellm."""
        if model in self._routes:
            return self._routes[model]
        route: str | None = None
        transport = self.options.transport
        if transport == "openai" and not self.options.api_base:
            raise ConfigError(f"{self.component}: transport 'openai' needs api_base (the server's URL, e.g. "
                              "http://localhost:8000/v1)", hint="set api_base, or transport: auto")
        if transport != "litellm" and self.options.api_base:
            name, provider = model, None
            try:
                name, provider, _, _ = import_litellm().get_llm_provider(model, api_base=self.options.api_base)
            except Exception:  # noqa: BLE001 - litellm cannot route it: only an explicit 'openai' forces it
                name = model.split("/", 1)[1] if model.startswith("openai/") else model
            if transport == "openai" or provider == "openai":
                route = name
        self._routes[model] = route
        return route

    def _http_session(self) -> Any:
        """One aiohttp session per event loop, with as many connections as calls in flight. (httpx, under
        litellm and the OpenAI SDK, spent most of a judge's client CPU in its connection-pool bookkeeping at 32
        calls in flight.)"""
        import aiohttp

        loop = asyncio.get_running_loop()
        session = self._sessions.get(id(loop))
        if session is None:
            connector = aiohttp.TCPConnector(limit=self.options.concurrency, ttl_dns_cache=300)
            session = aiohttp.ClientSession(connector=connector,
                                            timeout=aiohttp.ClientTimeout(total=self.options.timeout))
            self._sessions = {id(loop): session}  # sessions of finished loops are dropped
        return session

    async def aclose(self) -> None:
        """Close this event loop's HTTP connections (call before the loop ends; litellm manages its own)."""
        try:
            session = self._sessions.pop(id(asyncio.get_running_loop()), None)
        except RuntimeError:  # pragma: no cover - no running loop
            return
        if session is not None:
            await session.close()

    async def _post_chat(self, name: str, messages: list[dict[str, str]], params: dict[str, Any]) -> dict:
        """POST one chat completion; returns the parsed body or raises :class:`_HttpError` / a network error."""
        import json

        headers = {"Content-Type": "application/json"}
        key = self._key or os.environ.get("OPENAI_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = str(self.options.api_base).rstrip("/") + "/chat/completions"
        body = {"model": name, "messages": messages, **{k: v for k, v in params.items() if v is not None}}
        async with self._http_session().post(url, data=json.dumps(body), headers=headers) as response:
            text = await response.text()
            if response.status >= 400:
                raise _HttpError(response.status, text[:500], response.headers.get("Retry-After"))
            try:
                return json.loads(text)
            except ValueError:
                raise ValueError(f"the API answered HTTP {response.status} with a body that is not JSON: "
                                 f"{text[:120]!r}") from None

    async def _call_direct(self, model: str, name: str, messages: list[dict[str, str]],
                           params: dict[str, Any]) -> Completion:
        """One attempt over the OpenAI protocol (no retries)."""
        data = await self._post_chat(name, messages, params)
        try:
            text = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ValueError("the API answer has no choices[0].message.content") from None
        if text is None:
            raise ValueError("the API returned no message content")
        usage = data.get("usage") or {}
        tokens = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        return Completion(text=str(text), cost=float(self.price_of(model, *tokens) or 0.0),
                          prompt_tokens=tokens[0], completion_tokens=tokens[1])

    def _classify_direct(self, model: str, exc: Exception) -> tuple[str, str]:
        """401/403/404 are fatal, 400/413/422 fail the call, 429/5xx/timeouts/garbage are retried."""
        if isinstance(exc, _HttpError):
            message = self.scrub(f"{model}: {exc.kind} (HTTP {exc.status}): {exc.body}")
            if exc.status in (401, 403, 404):
                return "fatal", message
            return ("final" if exc.status in (400, 413, 422) else "retry"), message
        return "retry", self.scrub(f"{type(exc).__name__}: {exc}")

    async def _call_litellm(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        """One attempt through ``litellm.acompletion`` (its own retries are off)."""
        litellm = import_litellm()
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "timeout": self.options.timeout,
                                  "max_retries": 0, **params}
        if self.options.api_base:
            kwargs["api_base"] = self.options.api_base
        if self._key:
            kwargs["api_key"] = self._key
        response = await litellm.acompletion(**kwargs)
        text = response.choices[0].message.content
        if text is None:
            raise ValueError("the API returned no message content")
        usage = getattr(response, "usage", None)
        tokens = (int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0))
        return Completion(text=str(text), cost=self._cost(model, response, tokens),
                          prompt_tokens=tokens[0], completion_tokens=tokens[1])

    def _classify_litellm(self, model: str, exc: Exception) -> tuple[str, str]:
        """Authentication / permission / unknown model are fatal; bad requests fail the call; the rest retry."""
        litellm = import_litellm()
        fatal_types = tuple(t for t in (getattr(litellm, "AuthenticationError", None),
                                        getattr(litellm, "PermissionDeniedError", None),
                                        getattr(litellm, "NotFoundError", None)) if t is not None)
        final_types = tuple(t for t in (getattr(litellm, "BadRequestError", None),
                                        getattr(litellm, "ContentPolicyViolationError", None),
                                        getattr(litellm, "ContextWindowExceededError", None),
                                        getattr(litellm, "UnsupportedParamsError", None)) if t is not None)
        if isinstance(exc, fatal_types):
            return "fatal", self.scrub(f"{model}: {type(exc).__name__}: {exc}")
        if isinstance(exc, final_types):
            return "final", self.scrub(f"{model}: {type(exc).__name__}: {exc}")
        return "retry", self.scrub(f"{type(exc).__name__}: {exc}")  # rate limit, timeout, 5xx, garbage

    async def complete(self, model: str, messages: list[dict[str, str]], **params: Any) -> Completion:
        """One chat completion with bounded retries, over either transport; raises :class:`CallFailed`."""
        name = self.openai_model_name(model)
        attempt: Callable[[], Awaitable[Completion]]
        if name is not None:
            attempt, classify = (lambda: self._call_direct(model, name, messages, params)), self._classify_direct
        else:
            attempt, classify = (lambda: self._call_litellm(model, messages, params)), self._classify_litellm
        last = ""
        unreachable = False
        for n in range(self.options.max_retries + 1):
            try:
                return await attempt()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - sorted by the transport's classify, retries bounded
                kind, last = classify(model, exc)
                if kind != "retry":
                    raise CallFailed(last, fatal=kind == "fatal") from None
                unreachable = _unreachable(exc)
                if n < self.options.max_retries:
                    await asyncio.sleep(self._backoff(n, exc))
        tries = self.options.max_retries + 1
        attempts = f"{tries} attempt{'s' if tries > 1 else ''}"
        if unreachable:  # nothing listens there: every other call would fail the same way (exit 4, issue 14 §1)
            where = self.options.api_base or "the provider's API"
            raise CallFailed(f"{model}: {UNREACHABLE} ({where}) after {attempts}: {last}", fatal=True)
        raise CallFailed(f"{model}: gave up after {attempts}: {last}")


#: the words of a connection that could not be made at all (refused, unknown host, no route)
UNREACHABLE = "cannot connect to the API"


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a connection that could not be made: refused, unknown host, no
    route. litellm wraps it several times (InternalServerError < APIConnectionError < httpx.ConnectError <
    ConnectionRefusedError), so the whole cause chain is searched. A timeout is not one: a slow server is not a
    missing one."""
    import socket

    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, (ConnectionRefusedError, socket.gaierror)):
            return True
        if type(node).__name__ in ("ClientConnectorError", "ClientConnectorDNSError", "ConnectError"):
            return True
        node = node.__cause__ or node.__context__
    return False


def fatal_error(component: str, message: str, api_key_env: str | None) -> InfrastructureError:
    if UNREACHABLE in message:
        return InfrastructureError(scrub(f"{component}: {message}"),
                                   hint="is the server running? check api_base and the network")
    hint = (f"check the key in ${api_key_env} and the model name" if api_key_env
            else "check the model name and the provider's key variable (or set api_key_env)")
    return InfrastructureError(scrub(f"{component}: {message}"), hint=hint)
