"""The model being trained (π_θ) and its frozen reference (π_ref), loaded fresh from the base weights.

Every iteration restarts from π_BASE (spec §2.1), never from the previous checkpoint, so loading — with the dtype
the precision asks for, gradient checkpointing and an optional LoRA adapter — lives in one place for every trainer.
"""

from __future__ import annotations

import random
from typing import Any

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.training.precision import resolve_precision, weight_dtype
from sami_toolkit.training.request import TrainRequest
from sami_toolkit.training.settings import LoraSettings


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators, so two runs with one seed draw the same batches and LoRA init."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def load_policy(request: TrainRequest, device: str) -> tuple[Any, Any]:
    """Load the base weights fresh (spec §2.1: every iteration restarts from π_BASE), in the dtype the precision
    asks for, with gradient checkpointing and LoRA applied. Returns ``(model, tokenizer)``."""
    import torch

    from sami_toolkit.models.loading import enable_activation_checkpointing, load_model, load_tokenizer

    settings = request.settings
    tokenizer = load_tokenizer(request.base_model, trust_remote_code=request.trust_remote_code)
    model = load_model(request.base_model, dtype=weight_dtype(settings), device=device,
                       trust_remote_code=request.trust_remote_code)
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False  # a KV cache is useless in training and breaks gradient checkpointing
    if settings.gradient_checkpointing:
        enable_activation_checkpointing(model)
    torch.manual_seed(request.seed)  # LoRA's A matrices are initialised randomly
    if settings.lora is not None:
        model = apply_lora(model, settings.lora)
    model.train()
    return model, tokenizer


def load_reference(request: TrainRequest, device: str) -> Any:
    """The frozen base model for the KL term (spec §3), or ``None`` when ``kl_beta`` is 0 or LoRA is on (a LoRA
    model's reference is the same network with its adapter disabled, which costs no memory)."""
    from sami_toolkit.models.loading import load_model

    settings = request.settings
    if settings.kl_beta == 0 or settings.lora is not None:
        return None
    dtype = "bfloat16" if resolve_precision(settings, device) != "fp32" else "float32"
    reference = load_model(request.base_model, dtype=dtype, device=device,
                           trust_remote_code=request.trust_remote_code)
    reference.eval()
    reference.requires_grad_(False)
    return reference


def apply_lora(model: Any, lora: LoraSettings) -> Any:
    """Wrap ``model`` in a peft LoRA model; ``target_modules: null`` uses peft's per-architecture default, or
    every linear layer for architectures peft does not know."""
    try:
        from peft import LoraConfig, get_peft_model
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS
    except ImportError:
        raise ConfigError("train.lora needs the 'peft' package", hint="pip install 'sami-kit[lora]'") from None
    targets: Any = lora.target_modules
    if targets is None and getattr(model.config, "model_type", None) not in DEFAULTS:
        targets = "all-linear"
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                        task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(f"train.lora.target_modules: {exc}",
                          hint="list module names of this architecture, e.g. [q_proj, v_proj]") from None


def is_peft_model(model: Any) -> bool:
    """Whether ``model`` is a peft model (False when peft is not installed: then nothing can be one)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)
