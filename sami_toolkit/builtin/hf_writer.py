"""The built-in ``hf`` principle writer: the spec §5.1 seed prompt answered by a local transformers model.

Greedy decoding, so the same model writes the same principles every time (the paper's weak writer was
mistral-7b-instruct, spec §5.1). Instruction-tuned models with a chat template work best; the prompt is sent as one
user turn through that template, or as plain text when the tokenizer has none.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions
from sami_toolkit.text.principle_writing import PromptedWriter


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

    def complete(self, prompt: str) -> str:
        import torch

        from sami_toolkit.models.loading import load_model, load_tokenizer

        tok = load_tokenizer(self.options.model, trust_remote_code=self.options.trust_remote_code)
        model = load_model(self.options.model, dtype=self.options.dtype, device=self.options.device,
                           trust_remote_code=self.options.trust_remote_code)
        model.eval()
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
