#!/usr/bin/env python
"""Benchmark a sampler's generation throughput on the demo's TL;DR prompts (a script, not a test).

Generates one response per prompt (greedy, ``--max-new-tokens``) with each sampler named and prints generated
tokens per second (the response tokens, counted with the model's tokenizer) and prompts per second.  The first
batch is a warm-up and is not timed (model load, CUDA graphs, allocator).

    python bench/bench_sampler.py                                  # hf sampler, embedded SmolLM2, CPU
    python bench/bench_sampler.py --sampler hf vllm --device cuda  # on a GPU machine with the vLLM plugin
    python bench/bench_sampler.py --model path/to/checkpoint --prompts 256 --batch-size 64

``--ignore-eos`` style forcing is not used: a model that stops early generates fewer tokens, and tokens/s counts
what was generated.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _prompts(n: int) -> list[str]:
    """The demo's posts in the TL;DR generation prompt with the concise/comprehensive constitution."""
    from sami_toolkit.text.constitutions import all_constitutions
    from sami_toolkit.sampling.generation import generation_prompts, resolve_templates
    from sami_toolkit.text.principles import load_principle_set
    from sami_toolkit import get_component
    from sami_toolkit.run.config import load_run_config

    config = load_run_config(preset="demo")
    queries = get_component("query-sources", config.data.source.name, config.data.source.options).load()
    pset = load_principle_set(config.principles)
    text = all_constitutions(pset)[0].render(pset)
    templates = resolve_templates(config.task, None)
    picked = [queries[i % len(queries)] for i in range(n)]
    return generation_prompts(templates, picked, [text] * n)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", nargs="+", default=["hf"], help="sampler plugin names (hf, vllm, ...)")
    parser.add_argument("--model", default="smollm2", help="model reference (default: the embedded SmolLM2)")
    parser.add_argument("--prompts", type=int, default=64, help="prompts to generate for (after the warm-up)")
    parser.add_argument("--batch-size", type=int, default=16, help="hf sampler batch size")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--device", default="auto", help="hf sampler device: auto, cpu or cuda")
    parser.add_argument("--dtype", default="auto", help="hf sampler dtype: auto, float32 or bfloat16")
    args = parser.parse_args(argv)

    from sami_toolkit import load_plugins
    from sami_toolkit.models.loading import load_tokenizer, resolve_model

    registry = load_plugins()

    model = resolve_model(args.model)
    prompts = _prompts(args.prompts + args.batch_size)
    warmup, timed = prompts[:args.batch_size], prompts[args.batch_size:]
    tokenizer = load_tokenizer(model)
    print(f"model={args.model} prompts={len(timed)} max_new_tokens={args.max_new_tokens} cpus={os.cpu_count()}",
          flush=True)
    print(f"{'sampler':>8} {'seconds':>8} {'tokens':>7} {'tok/s':>8} {'prompts/s':>9}", flush=True)
    for name in args.sampler:
        options: dict = {"max_new_tokens": args.max_new_tokens, "temperature": 0.0}
        if name == "hf":
            options.update(batch_size=args.batch_size, device=args.device, dtype=args.dtype)
        sampler = registry.create("samplers", name, options)
        sampler.generate(model, warmup)
        start = time.perf_counter()
        responses = sampler.generate(model, timed)
        seconds = time.perf_counter() - start
        tokens = sum(len(tokenizer.encode(r, add_special_tokens=False)) for r in responses)
        print(f"{name:>8} {seconds:>8.2f} {tokens:>7} {tokens / seconds:>8.1f} {len(timed) / seconds:>9.2f}",
              flush=True)
        if hasattr(sampler, "close"):
            sampler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
