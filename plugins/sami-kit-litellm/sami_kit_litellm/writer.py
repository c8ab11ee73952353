"""The ``litellm`` principle writer: the spec §5.1 seed prompt sent to an API model (the paper used claude-opus).

An unusable answer is asked for again (``attempts``, with the problem named); API failures are not: they are
already retried inside the client (``max_retries``) and then fail with exit 4."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions
from sami_toolkit.core.errors import InfrastructureError
from sami_toolkit.text.principle_writing import PromptedWriter, attempts_option

from .client import ApiClient, ApiOptions, CallFailed, fatal_error, run_sync


class _WriterFields(ComponentOptions):
    """The writer's own options; listed before the connection options."""

    model: str = Field("claude-3-opus-20240229", description="litellm model string; the paper's strong writer "
                                                             "was claude-3-opus-20240229 (spec §5.1).")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (0 = as deterministic as "
                                                            "the API allows).")
    max_tokens: int = Field(1024, ge=16, description="Longest answer in tokens.")
    system_prompt: str | None = Field(None, description="Optional system message sent before the seed prompt.")
    attempts: int = attempts_option()


class LiteLLMWriter(PromptedWriter):
    """Writes principle definitions and antitheses with an API model through litellm (spec §5.1)."""

    name = "litellm"

    class Options(ApiOptions, _WriterFields):  # MRO order puts _WriterFields' fields first
        pass

    def complete(self, prompt: str) -> str:
        client = ApiClient(self.options, component=f"principle writer '{self.name}'")
        messages = ([{"role": "system", "content": self.options.system_prompt}] if self.options.system_prompt
                    else []) + [{"role": "user", "content": prompt}]

        async def call() -> Any:
            try:
                return await client.complete(self.options.model, messages, temperature=self.options.temperature,
                                             max_tokens=self.options.max_tokens)
            finally:
                await client.aclose()

        try:
            return run_sync(call).text
        except CallFailed as exc:
            if exc.fatal:
                raise fatal_error(f"principle writer '{self.name}'", str(exc), self.options.api_key_env) from None
            raise InfrastructureError(client.scrub(f"principle writer '{self.name}': {exc}"),
                                      hint="check api_base / the provider's status, or raise timeout/max_retries") from None
