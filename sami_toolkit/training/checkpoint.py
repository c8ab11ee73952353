"""Writing the trained model as a Hugging Face checkpoint, all at once or not at all.

A resumed run treats a checkpoint directory as finished only when its stage is marked done, but a half-written
directory must never even exist under the final name: the checkpoint is written to a sibling staging directory
and moved into place with :func:`sami_toolkit.core.io.atomic_replace_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from sami_toolkit.core.errors import InfrastructureError
from sami_toolkit.core.io import atomic_replace_dir, remove_tree
from sami_toolkit.training.policy import is_peft_model


def save_checkpoint(model: Any, tokenizer: Any, output_dir: str | os.PathLike, *, state_dict: dict | None = None,
                    lora_save: Literal["merged", "adapter"] = "merged") -> Path:
    """Write a Hugging Face checkpoint (``config.json``, ``*.safetensors``, tokenizer) to ``output_dir``
    atomically: everything goes to a sibling temp directory that is renamed into place, so a crash never
    leaves a half-written checkpoint that a resumed run would mistake for a finished one.

    A peft model is saved merged (``merge_and_unload``: a plain model anyone can load) or as the adapter only.
    ``state_dict`` overrides the model's own (DeepSpeed ZeRO-3 gathers the full weights into one)."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = output_dir.with_name(f".{output_dir.name}.tmp-{os.getpid()}")
    remove_tree(staging)
    to_save = model
    if is_peft_model(model) and lora_save == "merged":
        to_save = model.merge_and_unload()
        state_dict = None
    try:
        to_save.save_pretrained(staging, safe_serialization=True, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    except Exception as exc:
        remove_tree(staging)
        raise InfrastructureError(f"could not save the checkpoint to {output_dir}: {type(exc).__name__}: {exc}") from None
    return atomic_replace_dir(staging, output_dir)
