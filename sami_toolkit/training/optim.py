"""Optimizer, learning-rate schedule, gradient norm and the update itself, as the paper's runs had them.

PyTorch defaults apart from the learning rate (spec §4.2); a constant LR (reference repo HEAD) or the authors'
trainer's linear schedule with one warm-up step (spec §10.5); optional clipping.  Shared by every trainer so the
engines differ only in how they run the step, never in what update it makes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from sami_toolkit.training.settings import TrainSettings

if TYPE_CHECKING:  # pragma: no cover
    import torch


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
