"""The built-in ``hf`` principle writer: the spec §5.1 seed prompt answered by a local transformers model.

Greedy decoding, so the same model writes the same principles every time (the paper's weak writer was
mistral-7b-instruct, spec §5.1). Instruction-tuned models with a chat template work best; the prompt is sent as one
user turn through that template, or as plain text when the tokenizer has none. An unusable answer (a missing,
empty or repeated definition or antithesis) is asked for again up to ``attempts`` times with the problem named
(:class:`~sami_toolkit.text.principle_writing.PromptedWriter`); the model is loaded once for all attempts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions
from sami_toolkit.text.principle_writing import PromptedWriter, attempts_option


class HFWriter(PromptedWriter):
    """Writes principles with a local transformers model (greedy decoding, offline)."""

    name = "hf"

    class Options(ComponentOptions):
        model: str = Field("smollm2", description="Model reference: hub id, local directory, .gguf file, or "
                                                  "'smollm2' (embedded SmolLM2-135M-Instruct; a weak writer).")
        max_new_tokens: int = Field(512, ge=1, description="Longest answer in tokens.")
        dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights dtype.")
        device: str = Field("cpu", description="torch device, e.g. cpu or cuda.")
        chat_template: bool = Field(True, description="Use the tokenizer's chat template when it has one.")
        trust_remote_code: bool = Field(False, description="Allow model repositories to run their own code.")
        attempts: int = attempts_option()

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._loaded: tuple[Any, Any] | None = None  # (tokenizer, model), loaded on first use

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from sami_toolkit.models.loading import load_model, load_tokenizer

            tok = load_tokenizer(self.options.model, trust_remote_code=self.options.trust_remote_code)
            model = load_model(self.options.model, dtype=self.options.dtype, device=self.options.device,
                               trust_remote_code=self.options.trust_remote_code)
            model.eval()
            self._loaded = (tok, model)
        return self._loaded

    def complete(self, prompt: str) -> str:
        import torch

        tok, model = self._model()
        if self.options.chat_template and getattr(tok, "chat_template", None):
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
            ids = tok.encode(text, add_special_tokens=False)
        else:
            ids = tok.encode(prompt)
        input_ids = torch.tensor([ids], device=self.options.device)
        with torch.inference_mode():
            output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                    max_new_tokens=self.options.max_new_tokens, do_sample=False,
                                    pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        return str(tok.decode(output[0, len(ids):], skip_special_tokens=True)).strip()

    def writer_label(self) -> str:
        return self.options.model
