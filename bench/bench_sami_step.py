#!/usr/bin/env python
"""Benchmark the SAMI training step against a bare forward+backward on SmolLM2-135M (a script, not a test).

Both run on the same queries (C constitutions, P prompt tokens, R tokens per response) and count the same
tokens: the C² (prompt, response) pairings of every query.

  bare   forward+backward of the C² prompt+response sequences with ``labels=input_ids`` (what a plain LM
         fine-tuning step on that text would cost)
  sami   :func:`sami_toolkit.training.step.sami_step` — scoring (layout auto: packed for llama-type models), the
         two-sided SAMI loss and backward, accumulated over micro-batches — plus the optimizer step

Usage::

    python bench/bench_sami_step.py                       # bf16-mixed, 2 queries x C=2, P~300, R~60
    python bench/bench_sami_step.py --precision fp32 --c 4 --repeats 3

Prints tokens/s for both and their ratio (median of ``--repeats`` after one untimed warm-up step).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def _text(words: int, seed: int) -> str:
    import random

    vocab = ("the post is about my landlord job friend dog cat question money rent work week day people time "
             "because and but so then after before I we you they said asked told").split()
    rng = random.Random(seed)
    return " ".join(rng.choice(vocab) for _ in range(words))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="model reference (default: the embedded SmolLM2)")
    parser.add_argument("--queries", type=int, default=2, help="queries per step (batch size)")
    parser.add_argument("--micro-batch-size", type=int, default=1)
    parser.add_argument("--c", type=int, default=2, help="constitutions per query")
    parser.add_argument("--prompt-words", type=int, default=240, help="≈ P prompt tokens x 0.8")
    parser.add_argument("--response-words", type=int, default=50)
    parser.add_argument("--precision", choices=["bf16-mixed", "fp32", "bf16"], default="bf16-mixed")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from sami_toolkit.builtin.loss_components import SamiLoss
    from sami_toolkit.training.optim import build_optimizer
    from sami_toolkit.training.precision import autocast_context, weight_dtype
    from sami_toolkit.training.settings import TrainSettings
    from sami_toolkit.training.step import count_tokens, sami_step
    from sami_toolkit.models.loading import load_model, load_tokenizer

    settings = TrainSettings(precision=args.precision, micro_batch_size=args.micro_batch_size, lr=1e-7)
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, dtype=weight_dtype(settings))
    model.config.use_cache = False
    model.train()
    batch = [{"train_prompts": [f"{k + 1}. Principle {k}.\n" + _text(args.prompt_words, 10 * q + k) + " Summary:"
                                for k in range(args.c)],
              "responses": [_text(args.response_words, 1000 + 10 * q + j) for j in range(args.c)]}
             for q in range(args.queries)]
    tokens = count_tokens(tokenizer, batch)
    optimizer = build_optimizer(model.parameters(), settings)
    loss_fn = SamiLoss()

    def sami() -> None:
        sami_step(model, tokenizer, batch, settings, loss_fn=loss_fn)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    texts = [q["train_prompts"][k] + q["responses"][j] for q in batch for k in range(args.c) for j in range(args.c)]

    def bare() -> None:
        mbs = args.micro_batch_size * args.c * args.c
        for start in range(0, len(texts), mbs):
            enc = tokenizer(texts[start:start + mbs], return_tensors="pt", padding=True)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            with autocast_context(settings, "cpu"):
                loss = model(**enc, labels=labels, use_cache=False).loss
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    results = {}
    for name, fn in (("bare", bare), ("sami", sami)):
        fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        results[name] = statistics.median(times)
        print(f"{name:5s} {results[name]:7.2f} s/step  {tokens / results[name]:8.0f} tokens/s", flush=True)
    print(f"sami / bare throughput: {results['bare'] / results['sami']:.2f}x  "
          f"({tokens} tokens per step, {args.queries} queries x C={args.c}, {args.precision}, "
          f"{torch.get_num_threads()} threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
