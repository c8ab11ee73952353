"""The ``hf`` sampler: transformers ``generate``, batched with left padding (spec §2.3).

The paper sampled greedily (temperature 0) with vLLM, ``max_new_tokens=350``.  This sampler reproduces that on
any machine transformers runs on: prompts are grouped in batches, left-padded (a causal LM continues from the
right edge, so padding must sit on the left for every row to continue its own prompt), and only the
continuation is decoded.  Every prompt starts with exactly one BOS: the tokenizer adds it, so a prompt whose
text already starts with it (a chat template's ``<s>[INST]``) loses that text first (spec §7.4).  Stop strings
are passed to ``generate`` where supported (saves tokens) *and* applied to the decoded text, so the result never
depends on whether the backend stopped early.

The loaded model is cached between calls with the same model reference (a run samples many chunks from one
model) and released by :meth:`close` before training needs the memory.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions, Sampler
from sami_toolkit.text.postprocess import cut_at_stop


class HFSampler(Sampler):
    """transformers generate, batched with left padding; greedy by default (spec §2.3)."""

    name = "hf"

    class Options(ComponentOptions):
        max_new_tokens: int = Field(350, ge=1, description="Tokens generated per response (spec §2.3: 350; 500 "
                                                           "for CoT / llama).")
        temperature: float = Field(0.0, ge=0.0, description="0 = greedy decoding (the paper, spec §2.3); > 0 "
                                                            "samples.")
        top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling (only when temperature > 0).")
        batch_size: int = Field(8, ge=1, description="Prompts per generate call.")
        stop: list[str] = Field(default_factory=list, description="Stop strings: the response is cut at the first "
                                "one (the run adds the task template's stop strings).")
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
            "auto", description="Weights dtype: auto = bfloat16 where bf16 is fast (a GPU that supports it, a CPU "
                                "with AVX512-BF16/AMX), else float32 (bf16 is ~15x slower on AVX2-only CPUs).")
        device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA if available.")
        trust_remote_code: bool = Field(False, description="Allow the model repository to run its own code.")
        seed: int = Field(0, description="Seed for sampled decoding (temperature > 0).")

    def __init__(self, options: ComponentOptions | None = None) -> None:
        super().__init__(options)
        self._ref: str | None = None
        self._model: Any = None
        self._tokenizer: Any = None

    # ------------------------------------------------------------------------------------------------ model
    def _device(self) -> str:
        from sami_toolkit.models.devices import resolve_auto_device

        return resolve_auto_device(self.options.device)

    def _dtype(self, device: str) -> str:
        from sami_toolkit.models.devices import bf16_is_fast

        if self.options.dtype != "auto":
            return self.options.dtype
        return "bfloat16" if bf16_is_fast(device) else "float32"

    def load(self, model: str) -> tuple[Any, Any]:
        """The (model, tokenizer) for ``model``, loaded once and cached until another model or :meth:`close`."""
        if self._ref == model and self._model is not None:
            return self._model, self._tokenizer
        self.close()
        from sami_toolkit.models.loading import load_model, load_tokenizer

        device = self._device()
        tokenizer = load_tokenizer(model, trust_remote_code=self.options.trust_remote_code)
        tokenizer.padding_side = "left"
        loaded = load_model(model, dtype=self._dtype(device), device=device,
                            trust_remote_code=self.options.trust_remote_code)
        loaded.eval()
        self._ref, self._model, self._tokenizer = model, loaded, tokenizer
        return loaded, tokenizer

    def close(self) -> None:
        if self._model is None:
            return
        self._model = self._tokenizer = self._ref = None
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass

    # --------------------------------------------------------------------------------------------- generate
    def generate(self, model: str, prompts: Sequence[str], *, progress: Any = None) -> list[str]:
        import torch

        from sami_toolkit.models.loading import strip_leading_bos

        if not prompts:
            return []
        lm, tokenizer = self.load(model)
        o = self.options
        device = next(lm.parameters()).device
        out: list[str] = []
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": o.max_new_tokens,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if o.temperature > 0:
            gen_kwargs.update(do_sample=True, temperature=o.temperature, top_p=o.top_p)
            torch.manual_seed(o.seed)
        else:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if o.stop:
            gen_kwargs.update(stop_strings=list(o.stop), tokenizer=tokenizer)
        for start in range(0, len(prompts), o.batch_size):
            # a prompt that already starts with the BOS text (a chat template's rendering) gets no second BOS
            chunk = [strip_leading_bos(tokenizer, p) for p in prompts[start:start + o.batch_size]]
            enc = tokenizer(chunk, return_tensors="pt", padding=True)
            enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                try:
                    ids = lm.generate(**enc, **gen_kwargs)
                except (TypeError, ValueError) as exc:
                    if "stop_strings" not in gen_kwargs or "stop" not in str(exc):
                        raise
                    gen_kwargs.pop("stop_strings")  # an old/odd backend: the text is still cut below
                    gen_kwargs.pop("tokenizer", None)
                    ids = lm.generate(**enc, **gen_kwargs)
            continuation = ids[:, enc["input_ids"].shape[1]:]
            texts = tokenizer.batch_decode(continuation, skip_special_tokens=True)
            out.extend(cut_at_stop(t, o.stop) for t in texts)
            if progress is not None:
                progress(len(chunk))
        return out
