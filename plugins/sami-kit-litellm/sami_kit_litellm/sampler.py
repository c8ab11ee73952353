"""The ``litellm`` sampler: one chat completion per prompt, for API instruct baselines (spec §7.4 sends the
instruction as a single user turn)."""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from pydantic import Field

from sami_toolkit.core.components import Sampler
from sami_toolkit.core.errors import InfrastructureError

from .client import ApiClient, ApiOptions, CallFailed, fatal_error, run_sync


class LiteLLMSampler(Sampler):
    """Generates responses with an API model through litellm (the prompt is sent as one user message)."""

    name = "litellm"

    class Options(ApiOptions):
        temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (spec §8.2: greedy, 0).")
        top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
        max_tokens: int = Field(350, ge=1, description="Longest response in tokens (spec §8.2: 350).")
        system_prompt: str | None = Field(None, description="Optional system message sent before every prompt.")

    def generate(self, model: str, prompts: Sequence[str], *, progress: Any = None) -> list[str]:
        """One completion per prompt, in order. If any prompt still fails after its retries, nothing is returned
        and the run stops with exit 4 (a baseline with holes would bias every win rate computed against it)."""
        if not prompts:
            return []
        client = ApiClient(self.options, component=f"sampler '{self.name}'")
        params = {"temperature": self.options.temperature, "top_p": self.options.top_p,
                  "max_tokens": self.options.max_tokens}
        system = [{"role": "system", "content": self.options.system_prompt}] if self.options.system_prompt else []

        async def run_all() -> list[str | CallFailed]:
            semaphore = asyncio.Semaphore(self.options.concurrency)

            async def one(prompt: str) -> str | CallFailed:
                async with semaphore:
                    try:
                        text = (await client.complete(model, system + [{"role": "user", "content": prompt}],
                                                      **params)).text
                    except CallFailed as exc:
                        return exc
                    if progress is not None:
                        progress(1)
                    return text

            try:
                return await asyncio.gather(*(one(p) for p in prompts))
            finally:
                await client.aclose()

        outputs = run_sync(run_all)
        failures = [o for o in outputs if isinstance(o, CallFailed)]
        if failures:
            if any(f.fatal for f in failures):
                raise fatal_error(f"sampler '{self.name}'", str(next(f for f in failures if f.fatal)),
                                  self.options.api_key_env)
            raise InfrastructureError(client.scrub(f"sampler '{self.name}': {len(failures)} of {len(prompts)} "
                                                   f"prompts failed after retries; first error: {failures[0]}"),
                                      hint="raise max_retries/timeout or lower concurrency")
        return [str(o) for o in outputs]
