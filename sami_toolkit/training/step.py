"""The SAMI training step and what every trainer shares: settings, requests, pairs, optimizers, checkpoints.

A trainer plugin (``torch`` built in, ``deepspeed`` in ``plugins/sami-kit-deepspeed``) owns only the *engine*; the
SAMI maths — scoring the C×C log-prob matrix (spec §1.2, §1.4), the loss (spec §1.3), the optional KL term
(spec §3) and the exact-mean gradient accumulation (spec §10.4) — lives here so every engine computes the same
gradient.

This module is imported when a run config is validated, so it imports only pydantic and the standard library at
module level; torch, transformers and peft are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from sami_toolkit.core.errors import ConfigError, InfrastructureError
from sami_toolkit.training.scoring import ScoringOptions  # light: pydantic only at module level

if TYPE_CHECKING:  # pragma: no cover
    import torch


# ------------------------------------------------------------------------------------------------- settings
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
    kl_beta: float = Field(0.0, ge=0, description="Weight of a KL penalty to the frozen base model on response "
                                                  "tokens (spec §3; 0 in every paper run).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in the backward pass "
                                                            "(less memory, ~30% slower).")
    lora: LoraSettings | None = Field(None, description="Train a LoRA adapter instead of all weights.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train; 'auto' = CUDA if "
                                                                        "available.")


# ------------------------------------------------------------------------------------------ request/result
@dataclass
class TrainRequest:
    """Everything a trainer needs for one iteration. Training always starts from ``base_model`` (spec §2.1)."""

    base_model: str
    pairs_path: Path
    output_dir: Path
    steps: int
    batch_size: int
    seed: int
    settings: TrainSettings
    progress: Callable[[int, dict], None] | None = None
    trust_remote_code: bool = False


@dataclass
class TrainResult:
    """Where the checkpoint went and one metrics dict per optimizer step
    (``step, loss, lr, grad_norm, seconds, tokens`` and ``kl`` when ``kl_beta > 0``).

    ``precision`` is what training actually ran in (``fp32``, ``bf16-mixed``, ``bf16``): ``train.precision: auto``
    depends on the machine, and only the trainer knows what it did with the setting.  The loop writes it to
    ``train.json``; a trainer that leaves it None gets what ``train.precision`` resolves to on its device."""

    checkpoint_dir: Path
    steps: int
    metrics: list[dict] = field(default_factory=list)
    precision: str | None = None


#: the fields every pairs.jsonl record carries (written by the loop, one record per query)
PAIR_FIELDS: dict[str, type] = {"query_id": str, "query": str, "constitutions": list, "labels": list,
                                "train_prompts": list, "responses": list, "iteration": int}
_PER_CONSTITUTION = ("labels", "train_prompts", "responses")

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------- pairs
def load_pairs(path: str | os.PathLike) -> list[dict]:
    """Read a ``pairs.jsonl`` file: one query per line with C constitutions, C training prompts (principle order
    shuffled per prompt, spec §2.8) and C responses, ``responses[j]`` generated under ``constitutions[j]``.

    Every problem is a :class:`ConfigError` naming the file and line, because a malformed record would otherwise
    surface as a shape error deep inside the scoring code."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pairs file {path} does not exist",
                          hint="run the sampling stage first, or point the trainer at an existing pairs.jsonl")
    records: list[dict] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{where}: expected a JSON object, got {type(record).__name__}")
            missing = [name for name in PAIR_FIELDS if name not in record]
            if missing:
                raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}",
                                  hint=f"each record needs: {', '.join(PAIR_FIELDS)}")
            for name, kind in PAIR_FIELDS.items():
                value = record[name]
                if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                    raise ConfigError(f"{where}: field '{name}' must be a {kind.__name__}, "
                                      f"got {type(value).__name__}")
            c = len(record["constitutions"])
            if c < 2:
                raise ConfigError(f"{where}: query '{record['query_id']}' has {c} constitution(s); SAMI contrasts "
                                  f"at least 2 per query (spec §2.2)")
            for name in _PER_CONSTITUTION:
                if len(record[name]) != c:
                    raise ConfigError(f"{where}: query '{record['query_id']}' has {c} constitutions but "
                                      f"{len(record[name])} {name}; each list needs one entry per constitution")
            for name in ("train_prompts", "responses"):
                bad = [i for i, v in enumerate(record[name]) if not isinstance(v, str)]
                if bad:
                    raise ConfigError(f"{where}: {name}[{bad[0]}] must be a string")
            records.append(record)
    if not records:
        raise ConfigError(f"pairs file {path} holds no records")
    return records


def training_batches(pairs: Sequence[dict], *, steps: int, batch_size: int, seed: int,
                     source: str = "pairs") -> list[list[dict]]:
    """The ``steps`` batches of ``batch_size`` queries one training run consumes (spec §2.1): shuffle the pairs
    with ``random.Random(seed)`` and take the first ``steps * batch_size``.

    With fewer pairs than that (but at least one batch) the shuffled order is cycled and a warning is logged,
    so a short sampling stage still trains for the configured number of steps; fewer pairs than one batch is an
    error because no optimizer step could average over a full batch."""
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"training needs steps >= 1 and batch_size >= 1 (got steps={steps}, "
                          f"batch_size={batch_size})")
    n = len(pairs)
    if n < batch_size:
        raise ConfigError(f"{source}: {n} pair(s) but one batch needs batch_size={batch_size} queries",
                          hint="lower the batch size, or sample more queries (a larger pool or a looser filter)")
    order = list(pairs)
    random.Random(seed).shuffle(order)
    needed = steps * batch_size
    if n < needed:
        logger.warning("sami-kit: warning: %s: %d pairs for %d steps x %d queries = %d; cycling through the "
                       "shuffled pairs %.2f times (some queries are seen more than once)",
                       source, n, steps, batch_size, needed, needed / n)
        order = [order[i % n] for i in range(needed)]
    else:
        order = order[:needed]
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


# ----------------------------------------------------------------------------------- optimizer & schedule
def resolve_device(setting: str) -> str:
    """``auto`` → ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is a configuration error."""
    import torch

    from sami_toolkit.models.devices import resolve_auto_device

    if setting == "auto":
        return resolve_auto_device(setting)
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available",
                          hint="set train.device: auto (or cpu)")
    return setting


def resolve_precision(settings: TrainSettings, device: str) -> str:
    """The concrete precision for ``device``: ``auto`` becomes ``bf16-mixed`` where bf16 is fast, else ``fp32``."""
    if settings.precision != "auto":
        return settings.precision
    from sami_toolkit.models.devices import bf16_is_fast

    return "bf16-mixed" if bf16_is_fast(device) else "fp32"


def weight_dtype(settings: TrainSettings) -> str:
    """The dtype the trainable weights live in: bf16 only for ``precision: bf16`` (spec §10.7)."""
    return "bfloat16" if settings.precision == "bf16" else "float32"


def autocast_context(settings: TrainSettings, device: str) -> Any:
    """bf16 autocast for ``bf16-mixed`` (fp32 master weights, bf16 compute; CPU and CUDA), else a no-op."""
    import contextlib

    import torch

    if resolve_precision(settings, device) == "bf16-mixed":
        return torch.autocast(device_type="cuda" if str(device).startswith("cuda") else "cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_optimizer(params: Any, settings: TrainSettings) -> "torch.optim.Optimizer":
    """AdamW or RMSprop with PyTorch defaults apart from the learning rate (spec §4.2)."""
    import torch

    params = [p for p in params if p.requires_grad]
    if settings.optimizer == "adamw":
        wd = 0.01 if settings.weight_decay is None else settings.weight_decay
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=wd)
    wd = 0.0 if settings.weight_decay is None else settings.weight_decay
    return torch.optim.RMSprop(params, lr=settings.lr, weight_decay=wd)


def lr_multiplier(settings: TrainSettings, total_steps: int) -> Callable[[int], float]:
    """The LR multiplier for the optimizer step with 0-based index ``k``.

    ``constant``: always 1 (reference repo HEAD). ``linear_warmup``: the authors' trainer's
    ``get_scheduler("linear", num_warmup_steps=W, num_training_steps=T)`` (spec §4.2, §10.5): ``k / W`` during
    warm-up — so with W = 1 the **first step has LR 0** — then ``(T - k) / (T - W)``, floored at 0.
    ``T`` is ``schedule_total_steps`` (the authors' ~15) or the iteration's number of steps."""
    if settings.schedule == "constant":
        return lambda k: 1.0
    warmup = settings.warmup_steps
    total = settings.schedule_total_steps or total_steps

    def linear(k: int) -> float:
        if k < warmup:
            return k / max(1, warmup)
        return max(0.0, (total - k) / max(1, total - warmup))

    return linear


def build_scheduler(optimizer: Any, settings: TrainSettings, total_steps: int) -> Any:
    """A ``LambdaLR`` over :func:`lr_multiplier`; step it once after every optimizer step."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(settings, total_steps))


def grad_norm(parameters: Any) -> float:
    """The global L2 norm of the gradients (what clipping looks at)."""
    import torch

    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.nn.utils.get_total_norm(grads, norm_type=2.0))


def apply_update(params: Sequence[Any], optimizer: Any, scheduler: Any, settings: TrainSettings) -> tuple[float, float]:
    """Clip (if ``max_grad_norm`` is set, spec §10.5), step the optimizer and the schedule, zero the gradients.
    Returns ``(lr used for this step, global gradient norm before clipping)``."""
    import torch

    if settings.max_grad_norm is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm))
    else:
        norm = grad_norm(params)
    lr = float(optimizer.param_groups[0]["lr"])
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return lr, norm


# --------------------------------------------------------------------------------------------- the model
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
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def build_loss_fn(settings: TrainSettings) -> Callable[[Any], Any]:
    """The registered Loss component named by ``settings.loss`` (a callable: scores [..., C, C] → scalar mean)."""
    from sami_toolkit.plugins.registry import get_component

    return get_component("losses", settings.loss, settings.loss_options, where="train.loss_options")


# ------------------------------------------------------------------------------------------- the SAMI step
def _score(model: Any, tokenizer: Any, queries: Sequence[dict], settings: TrainSettings,
           return_logits: bool) -> Any:
    from sami_toolkit.training.scoring import score_matrix

    prompts = [q["train_prompts"] for q in queries]
    responses = [q["responses"] for q in queries]
    return score_matrix(model, tokenizer, prompts, responses, settings.scoring, return_logits=return_logits)


def count_tokens(tokenizer: Any, queries: Sequence[dict]) -> int:
    """Tokens in the C² (prompt, response) pairings of ``queries`` — the logical work of one scoring pass,
    independent of the scoring layout, so tokens/s is comparable across layouts and engines."""
    total = 0
    for q in queries:
        c = len(q["responses"])
        prompt_lengths = [len(ids) for ids in tokenizer(list(q["train_prompts"]))["input_ids"]]
        response_lengths = [len(ids) for ids in tokenizer(list(q["responses"]), add_special_tokens=False)["input_ids"]]
        total += c * sum(prompt_lengths) + c * sum(response_lengths)
    return total


def sami_step(model: Any, tokenizer: Any, batch: Sequence[dict], settings: TrainSettings, *,
              loss_fn: Callable[[Any], Any], reference_model: Any = None,
              backward: Callable[[Any], Any] | None = None, total_queries: int | None = None,
              weight_scale: float = 1.0) -> dict:
    """Accumulate one optimizer step's gradient for ``batch`` (does not step the optimizer).

    The batch is split into micro-batches of ``settings.micro_batch_size`` queries; each micro-batch's loss
    (the mean over its queries, spec §1.3) is weighted by its share ``m / total_queries`` of the batch before
    ``backward``, so the accumulated gradient is exactly the gradient of the **mean per-query loss over the
    batch** even when the last micro-batch is smaller (spec §10.4: the authors' trainer zeroed the gradient
    at every micro-step and so used only the last micro-batch).

    * ``kl_beta > 0`` adds ``beta * KL(π_θ || π_ref)`` on response tokens (spec §3) against ``reference_model``
      (or, for a peft model without one, the same model with its adapter disabled).
    * ``backward`` defaults to ``loss.backward()``; engines pass their own (DeepSpeed: ``engine.backward``).
    * ``total_queries`` / ``weight_scale`` let a data-parallel engine weight a rank's share of a global batch
      (weight = ``weight_scale * m / total_queries``; default ``1 * m / len(batch)``).

    Returns ``{"loss", "kl", "tokens", "queries"}`` over this batch (loss/kl are means per query, without the
    KL weight)."""
    if not batch:
        raise ValueError("sami_step needs at least one query")
    total = total_queries or len(batch)
    device = next(model.parameters()).device
    beta = settings.kl_beta
    use_kl = beta > 0
    if use_kl and reference_model is None and not _has_adapter(model):
        raise ValueError("kl_beta > 0 needs a reference model (or a LoRA model, whose adapter can be disabled)")
    do_backward = backward or (lambda value: value.backward())
    mbs = settings.micro_batch_size
    loss_sum = kl_sum = 0.0
    tokens = 0
    for start in range(0, len(batch), mbs):
        micro = batch[start:start + mbs]
        m = len(micro)
        with autocast_context(settings, str(device)):
            result = _score(model, tokenizer, micro, settings, return_logits=use_kl)
            scores = getattr(result, "scores", result)  # a ScoreOutput when logits were asked for
            loss = loss_fn(scores)
            objective = loss
            if use_kl:
                kl = _kl_term(model, tokenizer, micro, settings, result, reference_model)
                objective = loss + beta * kl
                kl_sum += float(kl.detach()) * m
        do_backward(objective * (weight_scale * m / total))
        loss_sum += float(loss.detach()) * m
        tokens += count_tokens(tokenizer, micro)
        del result, scores, loss, objective
    metrics = {"loss": loss_sum / len(batch), "tokens": tokens, "queries": len(batch)}
    if use_kl:
        metrics["kl"] = kl_sum / len(batch)
    return metrics


def _has_adapter(model: Any) -> bool:
    """A peft model (or an engine's proxy around one) can serve as its own KL reference with the adapter off:
    anything with peft's ``disable_adapter()`` context manager (plain transformers models have none)."""
    return callable(getattr(model, "disable_adapter", None))


def _kl_term(model: Any, tokenizer: Any, micro: Sequence[dict], settings: TrainSettings, policy_result: Any,
             reference_model: Any) -> Any:
    """KL(π_θ || π_ref) on response tokens of the same C² sequences (spec §3, §10.17)."""
    import torch

    from sami_toolkit.training.losses import kl_response_tokens

    _, policy_logits, mask = _unpack_logits(policy_result)
    with torch.no_grad():
        if reference_model is not None:
            ref_result = _score(reference_model, tokenizer, micro, settings, return_logits=True)
        else:  # a peft model: the reference is the base network under the adapter
            with model.disable_adapter():
                ref_result = _score(model, tokenizer, micro, settings, return_logits=True)
    _, ref_logits, _ = _unpack_logits(ref_result)
    return kl_response_tokens(policy_logits, ref_logits.to(policy_logits.device), mask)


def _unpack_logits(result: Any) -> tuple[Any, Any, Any]:
    """``score_matrix(..., return_logits=True)`` (a ``ScoreOutput``) → ``(scores, logits, response_mask)``."""
    return result.scores, result.logits, result.mask


# --------------------------------------------------------------------------------------------- checkpoint
def save_checkpoint(model: Any, tokenizer: Any, output_dir: str | os.PathLike, *, state_dict: dict | None = None,
                    lora_save: Literal["merged", "adapter"] = "merged") -> Path:
    """Write a Hugging Face checkpoint (``config.json``, ``*.safetensors``, tokenizer) to ``output_dir``
    atomically: everything goes to a sibling temp directory that is renamed into place, so a crash never
    leaves a half-written checkpoint that a resumed run would mistake for a finished one.

    A peft model is saved merged (``merge_and_unload``: a plain model anyone can load) or as the adapter only.
    ``state_dict`` overrides the model's own (DeepSpeed ZeRO-3 gathers the full weights into one)."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.with_name(f".{output_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    to_save = model
    if is_peft_model(model) and lora_save == "merged":
        to_save = model.merge_and_unload()
        state_dict = None
    try:
        to_save.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InfrastructureError(f"could not save the checkpoint to {output_dir}: {type(exc).__name__}: {exc}") from None
    old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
    if output_dir.exists():
        os.replace(output_dir, old)
    os.replace(tmp, output_dir)
    shutil.rmtree(old, ignore_errors=True)
    return output_dir


# ------------------------------------------------------------------------------------------------ helpers
def step_metrics(step: int, lr: float, norm: float, seconds: float, metrics: dict) -> dict:
    """The per-step record of :class:`TrainResult.metrics` (JSON-serialisable)."""
    out = {"step": step, "loss": metrics["loss"], "lr": lr, "grad_norm": norm, "seconds": round(seconds, 4),
           "tokens": metrics["tokens"]}
    if "kl" in metrics:
        out["kl"] = metrics["kl"]
    return out


class StepProgress:
    """Reports each optimizer step: to ``request.progress`` when the caller gave one (the loop draws its own
    display), otherwise as a rich progress bar on stderr."""

    def __init__(self, request: TrainRequest, description: str = "training") -> None:
        self.callback = request.progress
        self.total = request.steps
        self.description = description
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> "StepProgress":
        if self.callback is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            from sami_toolkit.core.consoles import console

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                                      console=console(), transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, info="")
        return self

    def update(self, step: int, metrics: dict) -> None:
        logger.info("step %d/%d loss=%.5f lr=%.3g grad_norm=%.4g %.2fs", step, self.total, metrics["loss"],
                    metrics["lr"], metrics["grad_norm"], metrics["seconds"])
        if self.callback is not None:
            self.callback(step, metrics)
        elif self._progress is not None:
            self._progress.update(self._task, completed=step, info=f"loss {metrics['loss']:.4f}")

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
