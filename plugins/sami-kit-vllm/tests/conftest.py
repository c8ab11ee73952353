"""Test set-up for sami-kit-vllm: a fake ``vllm`` on sys.path (per test), or the real one on a GPU.

By default every test imports the CPU fake in ``tests/fake_vllm`` (a real tiny transformers model behind vLLM's
API shapes).  With ``SAMI_KIT_REAL_VLLM=1`` the fake is not used: the same tests run against the installed vLLM on
a GPU (tests that inspect the fake's call records are skipped), with a tiny random model saved to a temp dir.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))  # for conftest_paths (not a test module, never collected)
from conftest_paths import FAKE_DIR, REAL_VLLM  # noqa: E402


def _forget_vllm() -> None:
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and far faster than two when other test runs share the CPUs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def vllm_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The ``vllm`` module the adapter will import: the fake (default) or the real one (SAMI_KIT_REAL_VLLM=1)."""
    if REAL_VLLM:
        import vllm

        yield vllm
        return
    _forget_vllm()
    monkeypatch.syspath_prepend(str(FAKE_DIR))
    import vllm

    assert getattr(vllm, "FAKE", False), f"expected the fake vllm, imported {vllm.__file__}"
    vllm.reset()
    yield vllm
    _forget_vllm()


@pytest.fixture
def fake_vllm(vllm_module: Any) -> Any:
    """The fake ``vllm`` (its call records are inspected); skipped when running against the real vLLM."""
    if REAL_VLLM:
        pytest.skip("inspects the fake vllm's call records")
    return vllm_module


@pytest.fixture
def no_vllm() -> Iterator[None]:
    """Make ``import vllm`` fail, as in the core's CPU environment (a real vLLM is put back afterwards)."""
    saved = {name: mod for name, mod in sys.modules.items() if name == "vllm" or name.startswith("vllm.")}
    _forget_vllm()
    sys.modules["vllm"] = None  # type: ignore[assignment]  # a None entry makes `import vllm` raise ImportError
    try:
        yield
    finally:
        _forget_vllm()
        sys.modules.update(saved)


@pytest.fixture(scope="session")
def vllm_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama-style model + tokenizer.  Real vLLM kernels need a head size they support (≥ 32),
    so the real-GPU mode uses hidden size 256 (4 heads of 64); the fake uses hidden size 32."""
    from sami_toolkit.testing import make_tiny_model_dir

    hidden = 256 if REAL_VLLM else 32
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-vllm"), hidden_size=hidden)


@pytest.fixture
def engine_options() -> dict[str, Any]:
    """Engine options for the tiny model: float32 so vLLM and transformers agree to ~1e-5."""
    return {"dtype": "float32", "gpu_memory_utilization": 0.3, "enforce_eager": True, "max_model_len": 512}
