"""The built-in ``hf`` judge: a local transformers model that reads its verdict off next-token probabilities.

Instead of generating a comparison and parsing it, the judge prompt (spec §7.5, or a custom template) is rendered
— through the tokenizer's chat template when it has one, as plain text otherwise — and followed by the answer
prefix ``Final Response:``. The model's next-token probabilities of ``A`` and ``B`` (summed over the spellings
``"A"`` / ``" A"``) decide: the larger wins; within ``tie_margin`` it is a tie. This is the "logprob judge" of
anchors-eval §9: one forward pass per item, deterministic, no parse failures, and the probabilities are kept in the
raw text (``P(A)=0.6132 P(B)=0.3868``) so position bias can be measured.

It needs no network or API key, which makes it the offline / demo / CI judge; small local models are weak judges,
so treat its win rates as a smoke test, not as the paper's GPT-4 numbers.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions, Judge
from sami_toolkit.core.records import JudgeItem, Judgment
from sami_toolkit.core.errors import ConfigError

ANSWER_PREFIX = "Final Response:"


class HFJudge(Judge):
    """Local transformers judge: compares P("A") and P("B") after "Final Response:" (offline, no API)."""

    name = "hf"

    class Options(ComponentOptions):
        model: str = Field("smollm2", description="Model reference: hub id, local directory, .gguf file, or "
                                                  "'smollm2' (the embedded SmolLM2-135M-Instruct).")
        dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights dtype; bfloat16 "
                                                                                        "is ~3x faster on recent "
                                                                                        "CPUs.")
        device: str = Field("cpu", description="torch device, e.g. cpu or cuda.")
        batch_size: int = Field(4, ge=1, description="Prompts per forward pass.")
        max_length: int = Field(2048, ge=16, description="Longest prompt in tokens; a longer item fails (it is not "
                                                         "silently truncated).")
        chat_template: bool = Field(True, description="Render with the tokenizer's chat template when it has one.")
        tie_margin: float = Field(0.0, ge=0, le=1, description="|P(A)-P(B)| at or below this (after normalising "
                                                               "the two to sum 1) is a tie.")
        template: str | None = Field(None, description="User-message template replacing the task's spec §7.5 "
                                                       "prompt ({query}, {constitution}, {response_a}, "
                                                       "{response_b}).")
        system_template: str | None = Field(None, description="System message replacing the task's default.")
        trust_remote_code: bool = Field(False, description="Allow model repositories to run their own code.")

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        if self.options.template is not None:
            from sami_toolkit.judging.pairwise import check_template

            check_template(self.options.template, where="judges.hf.options.template")
        self._model: Any = None
        self._tokenizer: Any = None
        self._letter_ids: dict[str, list[int]] = {}

    # -- loading -------------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._model is not None:
            return
        from sami_toolkit.models.loading import load_model, load_tokenizer

        self._tokenizer = load_tokenizer(self.options.model, trust_remote_code=self.options.trust_remote_code)
        self._model = load_model(self.options.model, dtype=self.options.dtype, device=self.options.device,
                                 trust_remote_code=self.options.trust_remote_code)
        self._model.eval()
        self._letter_ids = {letter: self._token_ids(letter) for letter in ("A", "B")}
        if set(self._letter_ids["A"]) & set(self._letter_ids["B"]):
            raise ConfigError(f"judge 'hf': the tokenizer of '{self.options.model}' does not tell 'A' from 'B'")

    def _token_ids(self, letter: str) -> list[int]:
        """Single-token spellings of ``letter`` as the next token after ``Final Response:``."""
        ids = []
        for spelling in (letter, f" {letter}"):
            encoded = self._tokenizer.encode(spelling, add_special_tokens=False)
            if len(encoded) == 1 and encoded[0] not in ids:
                ids.append(encoded[0])
        if not ids:
            raise ConfigError(f"judge 'hf': the tokenizer of '{self.options.model}' has no single token for "
                              f"'{letter}'; use another model")
        return ids

    def close(self) -> None:
        self._model = None
        self._tokenizer = None

    # -- prompts -------------------------------------------------------------------------------------------
    def render(self, item: JudgeItem) -> str:
        """The full text fed to the model, ending in ``Final Response:``."""
        from sami_toolkit.judging.pairwise import render_judge_prompt, resolve_templates

        system_t, user_t = resolve_templates(item.task, self.options.system_template, self.options.template,
                                             where="judges.hf.options.template")
        system, user = render_judge_prompt(item, system_t, user_t)
        tok = self._tokenizer
        if self.options.chat_template and getattr(tok, "chat_template", None):
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            try:
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # noqa: BLE001 - some templates reject a system turn: fold it into the user turn
                merged = [{"role": "user", "content": f"{system}\n\n{user}" if system else user}]
                text = tok.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
            return f"{text}{ANSWER_PREFIX}"
        return f"{system}\n\n{user}\n\n{ANSWER_PREFIX}" if system else f"{user}\n\n{ANSWER_PREFIX}"

    # -- judging -------------------------------------------------------------------------------------------
    def judge(self, items: Sequence[JudgeItem], *, progress: Any = None) -> list[Judgment]:
        import torch

        if not items:
            return []
        self._load()
        tok, model = self._tokenizer, self._model
        out: list[Judgment | None] = [None] * len(items)
        encoded: list[tuple[int, list[int]]] = []
        for i, item in enumerate(items):
            text = self.render(item)
            # chat templates already contain the BOS; plain prompts get the tokenizer's usual special tokens
            ids = tok.encode(text, add_special_tokens=not (self.options.chat_template and tok.chat_template))
            if len(ids) > self.options.max_length:
                out[i] = Judgment(id=item.id, verdict="failed",
                                  error=f"prompt has {len(ids)} tokens, more than max_length={self.options.max_length}")
                if progress is not None:
                    progress(1)
            else:
                encoded.append((i, ids))
        # longest first: batches of similar length waste less padding
        encoded.sort(key=lambda e: -len(e[1]))
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        a_ids, b_ids = self._letter_ids["A"], self._letter_ids["B"]
        device = self.options.device
        with torch.inference_mode():
            for start in range(0, len(encoded), self.options.batch_size):
                batch = encoded[start:start + self.options.batch_size]
                width = max(len(ids) for _, ids in batch)
                # right padding + gathering each row's last real position keeps positions identical to an
                # unbatched forward pass (left padding would shift them)
                input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, (_, ids) in enumerate(batch):
                    input_ids[row, :len(ids)] = torch.tensor(ids)
                    mask[row, :len(ids)] = 1
                last = torch.tensor([len(ids) - 1 for _, ids in batch], device=device)
                final = self._last_logits(input_ids.to(device), mask.to(device), last).float()
                probs = torch.softmax(final, dim=-1)
                p_a = probs[:, a_ids].sum(-1).tolist()
                p_b = probs[:, b_ids].sum(-1).tolist()
                for (index, _), pa, pb in zip(batch, p_a, p_b):
                    out[index] = self._judgment(items[index], pa, pb)
                if progress is not None:
                    progress(len(batch))
        return [j for j in out if j is not None]

    def _last_logits(self, input_ids: Any, mask: Any, last: Any) -> Any:
        """Next-token logits at each row's last real position. The output head runs on those positions only
        (a 49k-token vocabulary head over every position costs as much as several layers); models whose head is
        not a plain output embedding (e.g. logit soft-capping) get a full forward pass."""
        import torch

        model = self._model
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        if type(model).__name__.startswith(("Llama", "Mistral", "Qwen2", "Qwen3", "Phi3", "SmolLM")):
            hidden = model.get_decoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
            return model.get_output_embeddings()(hidden[rows, last])
        return model(input_ids=input_ids, attention_mask=mask).logits[rows, last]

    def _judgment(self, item: JudgeItem, p_a: float, p_b: float) -> Judgment:
        total = p_a + p_b
        if total <= 0:
            return Judgment(id=item.id, verdict="failed", raw=f"P(A)={p_a:.4g} P(B)={p_b:.4g}",
                            error="the model gives no probability to either letter")
        share_a = p_a / total
        if abs(2 * share_a - 1) <= self.options.tie_margin:
            verdict = "tie"
        else:
            verdict = "A" if p_a > p_b else "B"
        raw = f"P(A)={p_a:.6g} P(B)={p_b:.6g} P(A|A or B)={share_a:.4f}\n{ANSWER_PREFIX} {verdict}"
        return Judgment(id=item.id, verdict=verdict, raw=raw)  # type: ignore[arg-type]
