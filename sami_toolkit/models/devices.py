"""Device capabilities that change what is fast: bf16 is a large speed-up on GPUs and on CPUs with native bf16
instructions (AVX512-BF16, AMX), and a large slow-down elsewhere (measured on an AVX2-only CPU: a bf16 matmul
~15x slower than fp32). ``precision: auto`` uses these checks so the defaults are fast everywhere."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True where the CPU advertises bf16 instructions (Linux ``/proc/cpuinfo`` flags avx512_bf16 / amx_bf16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def bf16_is_fast(device: str) -> bool:
    """Whether bf16 compute is a speed-up on ``device`` ("cpu", "cuda", "cuda:1"...)."""
    if str(device).startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return cpu_has_native_bf16()


def resolve_auto_device(setting: str) -> str:
    """``auto`` → ``cuda`` where a GPU is visible, else ``cpu``; any other setting as given. The one meaning of
    ``device: auto`` shared by the trainers, the ``hf`` sampler and the MI evaluator."""
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
