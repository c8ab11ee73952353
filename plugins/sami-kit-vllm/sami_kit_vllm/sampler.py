"""The ``vllm`` sampler: batched GPU generation with vLLM's offline ``LLM.generate`` (spec §2.3).

SAMI generates one greedy response per (query, constitution) prompt with the previous iterate π_{η-1}
(spec §2.1); the paper did this with vLLM at temperature 0 and 350 new tokens (500 for CoT / llama, §2.3).
Prompts of one query share everything but the constitution, so prefix caching is on by default.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from pydantic import Field

from sami_toolkit.core.components import Sampler

from sami_toolkit.text.postprocess import cut_at_stop

from .engine import VLLMEngine, VLLMEngineOptions, generate_checked


class VLLMSampler(Sampler):
    """Generate responses on the GPU with vLLM (greedy by default, spec §2.3); one engine per checkpoint."""

    name = "vllm"

    class Options(VLLMEngineOptions):
        max_new_tokens: int = Field(350, ge=1, description="Most tokens generated per response (spec §2.3: 350; "
                                                           "500 for CoT prompts).")
        temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 = greedy, as in the paper.")
        top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (no effect when temperature = 0; "
                                                           "the paper set 0.9).")
        stop: list[str] = Field(default_factory=list, description="Strings that end a response; the response is "
                                                                   "cut before the first one.")
        batch_size: int = Field(1024, ge=1, description="Prompts per LLM.generate call, and per chunk a run writes "
                                                        "to samples.jsonl (resume granularity). vLLM schedules a "
                                                        "whole call at once, so keep it large; progress is "
                                                        "reported after each call.")

    options: "VLLMSampler.Options"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.engine = VLLMEngine(self.options)

    def sampling_params(self, vllm: Any) -> Any:
        """The ``vllm.SamplingParams`` for every request (built here so tests can check them exactly)."""
        o = self.options
        kwargs: dict[str, Any] = {"n": 1, "temperature": o.temperature, "top_p": o.top_p,
                                  "max_tokens": o.max_new_tokens}
        if o.stop:
            kwargs["stop"] = list(o.stop)
        if o.temperature > 0:
            kwargs["seed"] = o.seed  # reproducible sampling; greedy needs no seed
        return vllm.SamplingParams(**kwargs)

    def generate(self, model: str, prompts: Sequence[str], *, progress: Callable[[int], Any] | None = None
                 ) -> list[str]:
        """One completion per prompt, in order; each is cut before the first stop string."""
        prompts = list(prompts)
        if not prompts:
            return []
        llm = self.engine.get(model)
        from .engine import import_vllm

        params = self.sampling_params(import_vllm())
        tokenizer = self.engine.tokenizer()
        out: list[str] = []
        step = self.options.batch_size
        for start in range(0, len(prompts), step):
            chunk = prompts[start:start + step]
            results = generate_checked(llm, chunk, params)
            if len(results) != len(chunk):
                from sami_toolkit.core.errors import InfrastructureError

                raise InfrastructureError(f"vLLM returned {len(results)} outputs for {len(chunk)} prompts")
            # vLLM returns outputs in input order. The text is decoded from the generated ids the way the hf
            # sampler decodes them, then cut before the first stop string: vLLM's own `.text` drops a trailing
            # incomplete UTF-8 sequence (it detokenises incrementally), so a response cut by max_new_tokens inside
            # a multi-byte character would otherwise differ from hf's.
            out.extend(cut_at_stop(_decode(tokenizer, r.outputs[0]), self.options.stop) for r in results)
            if progress is not None:
                progress(len(chunk))
        return out

    def close(self) -> None:
        """Shut the engine down and free its GPU memory (call before training on the same GPU)."""
        self.engine.close()


def _decode(tokenizer: Any, completion: Any) -> str:
    """A completion's text from its token ids (special tokens skipped), as the hf sampler decodes; vLLM's own text
    when the ids are missing."""
    ids = getattr(completion, "token_ids", None)
    if ids is None:
        return completion.text
    return tokenizer.decode(list(ids), skip_special_tokens=True)
