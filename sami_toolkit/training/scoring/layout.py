"""Which layout a model can be scored in: packed where it is verified to be right, naive everywhere else.

The packed layout needs the model to honour a custom additive 4D attention mask with explicit position ids.  Some
architectures and attention kernels silently ignore or rewrite such a mask, which would give wrong scores with no
error, so this is an allow-list (verified by tests/test_packed_scoring.py), not a guess: anything else falls back to
the naive C² layout with one log line per reason.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from sami_toolkit.core.errors import ConfigError
from sami_toolkit.training.scoring.options import ScoringOptions

#: the package's logger: docs/scoring.md tells users to look for the fallback line under this name
logger = logging.getLogger("sami_toolkit.training.scoring")

#: model_type values whose attention is verified (tests/test_packed_scoring.py) to honour a custom additive 4D mask
#: with explicit position ids under sdpa and eager.  Extend only together with a test.
PACKED_MODEL_TYPES: frozenset[str] = frozenset({"llama", "mistral", "qwen2"})
#: attention implementations that take the additive float mask as-is (transformers passes a 4D mask through).
PACKED_ATTN_IMPLEMENTATIONS: frozenset[str] = frozenset({"sdpa", "eager"})


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    """Log ``message`` the first time only: a training run scores thousands of batches with the same model, and
    one line per reason is enough (the cache holds the messages already logged)."""
    logger.warning(message)


def attn_implementation(model: Any) -> str:
    """The attention implementation transformers will dispatch to (``eager`` when the config names none)."""
    config = model.config
    return str(getattr(config, "_attn_implementation", None) or getattr(config, "attn_implementation", None)
               or "eager")


def _sliding_window(config: Any) -> int | None:
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    return int(window)


def packed_unsupported_reason(model: Any, longest_sequence: int | None = None) -> str | None:
    """Why ``model`` cannot use the packed layout, or None if it can (an allow-list, not a guess)."""
    config = model.config
    model_type = getattr(config, "model_type", "?")
    attn = attn_implementation(model)
    if model_type not in PACKED_MODEL_TYPES:
        return (f"model type '{model_type}' is not verified with a custom 4D attention mask "
                f"(verified: {', '.join(sorted(PACKED_MODEL_TYPES))})")
    if attn not in PACKED_ATTN_IMPLEMENTATIONS:
        return (f"attention implementation '{attn}' cannot take a custom additive 4D mask "
                f"(packed scoring needs one of: {', '.join(sorted(PACKED_ATTN_IMPLEMENTATIONS))})")
    window = _sliding_window(config)
    if window is not None and longest_sequence is not None and longest_sequence > window:
        return (f"the scored sequences exceed the model's sliding window of {window} tokens, which a custom 4D "
                f"mask would bypass")
    return None


def choose_layout(model: Any, options: ScoringOptions, longest_sequence: int | None = None) -> str:
    """Resolve ``options.layout`` for ``model``: auto → packed if supported, else naive with one warning."""
    if options.layout == "naive":
        return "naive"
    reason = packed_unsupported_reason(model, longest_sequence)
    if reason is None:
        return "packed"
    if options.layout == "packed":
        raise ConfigError(f"scoring.layout=packed is not possible: {reason}",
                          hint="use scoring.layout: auto (falls back to naive) or naive")
    _warn_once(f"packed SAMI scoring disabled, using the naive C² layout (slower, same numbers): {reason}")
    return "naive"
