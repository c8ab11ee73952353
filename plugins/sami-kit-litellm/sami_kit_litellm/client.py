"""One bounded, concurrent way to call a chat model through ``litellm.acompletion``.

Shared by the judge, the principle writer and the sampler so that retries, timeouts, keys and costs behave the same
everywhere:

* **Keys** are read from the environment variable named by ``api_key_env``; the key is never an option, and it is
  scrubbed from every error message this module produces, so it cannot reach logs, caches or reports.
* **Retries** are bounded (``max_retries``) with exponential backoff that honours the server's ``Retry-After``
  (anchors-eval §10 #5: unbounded retries left runs stuck for days). litellm's and the OpenAI SDK's own retries are
  switched off so that this loop is the only one.
* **Errors** are sorted: authentication / unknown-model errors are *fatal* (every call would fail, exit 4); a bad
  request fails only that call; rate limits, timeouts, 5xx and garbage bodies are retried.
* **Cost** comes from litellm's cost map (``completion_cost``), or from ``input_cost_per_token`` /
  ``output_cost_per_token`` options for models litellm has no price for.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Awaitable, Callable, TypeVar

from pydantic import Field

from sami_toolkit.components import ComponentOptions
from sami_toolkit.errors import ConfigError, InfrastructureError

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

    # -- secrets -------------------------------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        """``text`` with the API key (if any) masked: error messages can echo request details."""
        if self._key and self._key in text:
            text = text.replace(self._key, "***redacted***")
        return text

    # -- pricing -------------------------------------------------------------------------------------------
    def has_custom_price(self) -> bool:
        return self.options.input_cost_per_token is not None or self.options.output_cost_per_token is not None

    def price_of(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for a call of this size, or ``None`` when the model has no known price."""
        if self.has_custom_price():
            return (prompt_tokens * (self.options.input_cost_per_token or 0.0)
                    + completion_tokens * (self.options.output_cost_per_token or 0.0))
        litellm = import_litellm()
        try:
            prompt_cost, completion_cost = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                                                  completion_tokens=completion_tokens)
        except Exception:  # noqa: BLE001 - unknown model: no price
            return None
        return float(prompt_cost) + float(completion_cost)

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

    async def complete(self, model: str, messages: list[dict[str, str]], **params: Any) -> Completion:
        """One chat completion with bounded retries; raises :class:`CallFailed`."""
        litellm = import_litellm()
        fatal_types = tuple(t for t in (getattr(litellm, "AuthenticationError", None),
                                        getattr(litellm, "PermissionDeniedError", None),
                                        getattr(litellm, "NotFoundError", None)) if t is not None)
        final_types = tuple(t for t in (getattr(litellm, "BadRequestError", None),
                                        getattr(litellm, "ContentPolicyViolationError", None),
                                        getattr(litellm, "ContextWindowExceededError", None),
                                        getattr(litellm, "UnsupportedParamsError", None)) if t is not None)
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "timeout": self.options.timeout,
                                  "max_retries": 0, **params}
        if self.options.api_base:
            kwargs["api_base"] = self.options.api_base
        if self._key:
            kwargs["api_key"] = self._key
        last = ""
        for attempt in range(self.options.max_retries + 1):
            try:
                response = await litellm.acompletion(**kwargs)
                text = response.choices[0].message.content
                if text is None:
                    raise ValueError("the API returned no message content")
                usage = getattr(response, "usage", None)
                tokens = (int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0))
                return Completion(text=str(text), cost=self._cost(model, response, tokens),
                                  prompt_tokens=tokens[0], completion_tokens=tokens[1])
            except asyncio.CancelledError:
                raise
            except fatal_types as exc:
                raise CallFailed(self.scrub(f"{model}: {type(exc).__name__}: {exc}"), fatal=True) from None
            except final_types as exc:
                raise CallFailed(self.scrub(f"{model}: {type(exc).__name__}: {exc}")) from None
            except Exception as exc:  # noqa: BLE001 - rate limit, timeout, 5xx, garbage: retried, bounded
                last = self.scrub(f"{type(exc).__name__}: {exc}")
                if attempt < self.options.max_retries:
                    await asyncio.sleep(self._backoff(attempt, exc))
        tries = self.options.max_retries + 1
        raise CallFailed(f"{model}: gave up after {tries} attempt{'s' if tries > 1 else ''}: {last}")


def fatal_error(component: str, message: str, api_key_env: str | None) -> InfrastructureError:
    hint = (f"check the key in ${api_key_env} and the model name" if api_key_env
            else "check the model name and the provider's key variable (or set api_key_env)")
    return InfrastructureError(f"{component}: {message}", hint=hint)
