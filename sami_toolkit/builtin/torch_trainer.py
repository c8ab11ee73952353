"""The built-in ``torch`` trainer: one process, one device, a plain PyTorch optimizer around the core SAMI step.

It is the reference engine (the DeepSpeed plugin must match its first update, and the tests check the maths
against it) and the right choice for small models, LoRA and CPU runs. The SAMI maths lives in
:mod:`sami_toolkit.training`; this module only owns the loop: load the base weights, step, clip, schedule, save.
The loss comes resolved in the request (``request.loss``), so the trainer never looks it up itself.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from sami_toolkit.core.components import ComponentOptions, Trainer
from sami_toolkit.training.request import TrainRequest, TrainResult


class TorchTrainer(Trainer):
    """Single-process PyTorch trainer (CPU or one GPU; full fine-tuning or LoRA)."""

    name = "torch"

    class Options(ComponentOptions):
        num_threads: int | None = Field(
            None, ge=1, description="torch intra-op CPU threads (null = PyTorch's default: all cores).")
        deterministic: bool = Field(
            False, description="Ask PyTorch for deterministic kernels (slower on GPU; CPU runs are already "
                               "deterministic).")

    def train(self, request: TrainRequest) -> TrainResult:
        """Run ``request.steps`` SAMI steps from the base weights (spec §2.1) and save a safetensors checkpoint."""
        import torch

        import sami_toolkit.training as T

        settings = request.settings
        if self.options.num_threads:
            torch.set_num_threads(self.options.num_threads)
        if self.options.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        # Validate the cheap things before loading a model.
        pairs = T.load_pairs(request.pairs_path)
        batches = T.training_batches(pairs, steps=request.steps, batch_size=request.batch_size, seed=request.seed,
                                     source=str(request.pairs_path))
        device = T.resolve_device(settings.device)

        T.seed_everything(request.seed)
        model, tokenizer = T.load_policy(request, device)
        reference = T.load_reference(request, device)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = T.build_optimizer(params, settings)
        scheduler = T.build_scheduler(optimizer, settings, request.steps)

        history: list[dict[str, Any]] = []
        with T.StepProgress(request) as progress:
            for step, batch in enumerate(batches, 1):
                started = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                metrics = T.sami_step(model, tokenizer, batch, settings, loss_fn=request.loss,
                                      reference_model=reference)
                lr, norm = T.apply_update(params, optimizer, scheduler, settings)
                record = T.step_metrics(step, lr, norm, time.perf_counter() - started, metrics)
                history.append(record)
                progress.update(step, record)
        optimizer.zero_grad(set_to_none=True)
        del optimizer, reference
        model.eval()
        lora_save = settings.lora.save if settings.lora is not None else "merged"
        checkpoint = T.save_checkpoint(model, tokenizer, request.output_dir, lora_save=lora_save)
        return TrainResult(checkpoint_dir=checkpoint, steps=len(history), metrics=history,
                           precision=T.resolve_precision(settings, device))
