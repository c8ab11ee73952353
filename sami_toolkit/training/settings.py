"""The run config's ``train:`` section: how one iteration trains (:class:`TrainSettings`, :class:`LoraSettings`).

Validated when a run config is loaded (``sami-kit config validate``, CLI start-up), so this module imports only
pydantic; the defaults follow the paper's runs (spec §4.2, §10.1) and every deviation is an explicit setting.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sami_toolkit.training.scoring.options import ScoringOptions


class LoraSettings(BaseModel):
    """Low-rank adaptation with ``peft`` instead of full fine-tuning (not in the paper; a cheap option for big
    models). The adapter starts from the base weights at every iteration, like full training (spec §2.1)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (the update is scaled by alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch during training.")
    target_modules: list[str] | None = Field(
        None, description="Module names to adapt (e.g. [q_proj, v_proj]); null lets peft pick per architecture, "
                          "falling back to every linear layer except the LM head.")
    save: Literal["merged", "adapter"] = Field(
        "merged", description="'merged': save full weights with the adapter folded in (loadable anywhere); "
                              "'adapter': save only the peft adapter (adapter_model.safetensors + adapter_config.json).")


class TrainSettings(BaseModel):
    """How one iteration's training runs (the run config's ``train:`` section). Defaults follow spec §10.1:
    Table 1's learning rate, constant LR, no clipping, fp32 master weights, exact-mean accumulation."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    lr: float = Field(5e-7, gt=0, description="Learning rate (Table 1: 5e-7; the llama3-70b runs used 1e-6, "
                                               "spec §4.2).")
    optimizer: Literal["adamw", "rmsprop"] = Field(
        "adamw", description="AdamW (mistral-7b) or RMSprop (mixtral, llama3); PyTorch defaults otherwise "
                             "(spec §4.2).")
    weight_decay: float | None = Field(
        None, ge=0, description="Weight decay; null = PyTorch's default for the optimizer (AdamW 0.01, RMSprop 0), "
                                "which is what the authors ran (spec §4.2).")
    schedule: Literal["constant", "linear_warmup"] = Field(
        "constant", description="'constant' (reference repo HEAD) or 'linear_warmup': the authors' trainer's "
                                "linear schedule with 1 warm-up step, so step 1 has LR 0 (spec §10.5).")
    warmup_steps: int = Field(1, ge=0, description="Warm-up steps of the linear schedule.")
    schedule_total_steps: int | None = Field(
        None, ge=1, description="Length of the linear schedule (the authors' was ~15 steps); default: the "
                                "number of steps of the iteration.")
    max_grad_norm: float | None = Field(
        None, gt=0, description="Clip the gradient's global norm to this value before each step (the authors' "
                                "trainer clipped at 1.0, spec §10.5); null = no clipping.")
    precision: Literal["auto", "bf16-mixed", "bf16", "fp32"] = Field(
        "auto", description="'auto': bf16-mixed where bf16 is fast (GPUs with bf16, CPUs with AVX512-BF16/AMX), "
                            "else fp32 (bf16 is ~15x slower on AVX2-only CPUs); "
                            "'bf16-mixed': fp32 master weights with bf16 autocast (spec §10.7); 'bf16': "
                                  "weights and optimizer state in bf16 (reference repo; small updates may round "
                                  "away); 'fp32': no autocast.")
    micro_batch_size: int = Field(1, ge=1, description="Queries per forward/backward pass (each query is C² "
                                                       "sequences); gradients are accumulated to the batch mean.")
    loss: str = Field("sami", description="Name of a registered loss component (`sami-kit losses list`).")
    loss_options: dict[str, Any] = Field(default_factory=dict, description="Options of the loss component.")
    scoring: ScoringOptions = Field(default_factory=ScoringOptions,
                                    description="How the C×C log-prob matrix is computed (spec §1.4).")
    kl_beta: float = Field(0.0, ge=0, description="Weight of a KL penalty to the frozen base model (spec §3; 0 in "
                                                  "every paper run).")
    kl_mode: Literal["response_tokens", "sequence", "all_positions"] = Field(
        "response_tokens", description="Which KL (spec §3, §10.17): response_tokens = token-level KL averaged over "
        "response tokens (default); sequence = the paper's sequence-level KL(p(y|x,c)), the per-sequence sum of "
        "token KLs averaged over the C² sequences; all_positions = the reference code's mean over every position "
        "of the padded batch, prompt and padding included (one extra forward pass per model).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass "
                                                            "(less memory, ~30% slower).")
    lora: LoraSettings | None = Field(None, description="Train a LoRA adapter instead of all weights.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train; 'auto' = CUDA if "
                                                                        "available.")
