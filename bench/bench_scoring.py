#!/usr/bin/env python
"""Benchmark SAMI scoring layouts on SmolLM2-135M (a script, not a test).

For C constitutions per query, P prompt tokens and R tokens per response (random token ids), it times one
forward+backward step (median of ``--repeats`` after ``--warmup`` untimed steps) and records the peak resident memory
(``ru_maxrss`` of a fresh subprocess per variant: tracemalloc cannot see torch's allocations) for the variants
below.  It reports wall-clock and process CPU seconds, and the ratios of the medians and of the fastest steps:
on a shared machine, noise only ever adds time, so the fastest steps are the steadiest comparison.

  bare         (a) forward+backward of the naive C² batch with ``labels=input_ids`` (the reference code's cost)
  naive        (b) ``score_token_ids(layout="naive")`` + two-sided SAMI loss, backward
  packed       (c) ``score_token_ids(layout="packed")`` + two-sided SAMI loss, backward
  bare-packed  (d) forward+backward with ``labels=input_ids`` of the *packed-shape* batch (C rows of P + C·R
               tokens, plain causal mask) — the run-loop throughput baseline: tokens/s of (c) ÷ tokens/s of (d)

Usage::

    python bench/bench_scoring.py                 # C=2,4 × fp32,bf16, 3 repeats, 2 rounds
    python bench/bench_scoring.py --quick         # C=2 bf16, 1 repeat (smoke run)
    python bench/bench_scoring.py --c 4 --dtype bf16 --repeats 5 --json out.json
    python bench/bench_scoring.py --device cuda --random-init   # on a GPU: SmolLM2's shape, random weights

Each round runs every variant once, back to back, and the ratios are taken within a round (their median is
printed): on a shared machine whose speed drifts over minutes, variants measured minutes apart are not comparable.

On CUDA the step is synchronised before the clock is read and peak memory is ``torch.cuda.max_memory_allocated``
after the model is loaded (so it counts activations, gradients and the model, not the CUDA context).  Before
timing, ``--check`` (on by default) scores the same batch with both layouts and prints the largest difference, so a
number is never reported for a layout that is wrong on that device.  ``--random-init`` builds the model from its
``config.json`` with random weights: the timing does not depend on the weights, and it lets the benchmark run where
the weights cannot be copied (a lent GPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

VARIANTS = ("bare", "naive", "packed", "bare-packed")


def _load_bench_model(args: argparse.Namespace):
    """The model in training mode on ``args.device``: SmolLM2's weights, or its shape with random weights."""
    from sami_toolkit.models.loading import load_model

    if args.random_init:
        from transformers import AutoConfig, AutoModelForCausalLM

        from sami_toolkit.models.loading import resolve_model

        config = AutoConfig.from_pretrained(resolve_model(args.model))
        config._attn_implementation = args.attn
        model = AutoModelForCausalLM.from_config(config).float()
    else:
        model = load_model(args.model, attn_implementation=args.attn)
    model.to(args.device)
    model.train()
    return model


def _worker(args: argparse.Namespace) -> None:
    """Run one variant in this (fresh) process and print one JSON line."""
    import contextlib

    import torch

    from sami_toolkit.training.losses import sami_loss
    from sami_toolkit.training.scoring import ScoringOptions, score_token_ids

    torch.manual_seed(0)
    device = args.device
    on_gpu = device.startswith("cuda")
    model = _load_bench_model(args)
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    vocab = model.config.vocab_size
    c, p_len, r_len = args.c, args.p, args.r
    # token ids in [10, vocab) avoid special tokens (BOS/EOS/pad are small ids in SmolLM2's vocabulary)
    prompts = [[torch.randint(10, vocab, (p_len,)).tolist() for _ in range(c)] for _ in range(args.queries)]
    responses = [[torch.randint(10, vocab, (r_len,)).tolist() for _ in range(c)] for _ in range(args.queries)]
    autocast = (torch.autocast("cuda" if on_gpu else "cpu", dtype=torch.bfloat16) if args.dtype == "bf16"
                else contextlib.nullcontext())
    max_diff = None
    if args.check and args.variant == "packed":
        with torch.no_grad(), autocast:
            naive = score_token_ids(model, prompts, responses, ScoringOptions(layout="naive", reduction="sum"))
            packed = score_token_ids(model, prompts, responses, ScoringOptions(layout="packed", reduction="sum"))
        max_diff = float((naive.float() - packed.float()).abs().max())

    if args.variant == "bare":
        ids = torch.tensor([prompts[q][k] + responses[q][j] for q in range(args.queries) for k in range(c)
                            for j in range(c)], device=device)
    elif args.variant == "bare-packed":
        ids = torch.tensor([prompts[q][k] + [tok for response in responses[q] for tok in response]
                            for q in range(args.queries) for k in range(c)], device=device)
    tokens = args.queries * {"bare": c * c * (p_len + r_len), "naive": c * c * (p_len + r_len),
                             "packed": c * (p_len + c * r_len), "bare-packed": c * (p_len + c * r_len)}[args.variant]

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            if args.variant in ("bare", "bare-packed"):
                loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            else:
                options = ScoringOptions(layout=args.variant, reduction="mean")
                scores = score_token_ids(model, prompts, responses, options)
                loss = sami_loss(scores)
        loss.backward()
        if on_gpu:
            torch.cuda.synchronize()

    times, cpu_times = [], []
    for i in range(args.warmup + args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        if i >= args.warmup:  # warm-up steps (allocator, autocast weight caches) are not timed
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    peak_gb = (torch.cuda.max_memory_allocated() / 1024**3 if on_gpu
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)
    print(json.dumps({"variant": args.variant, "c": c, "dtype": args.dtype, "device": device, "attn": args.attn,
                      "max_abs_diff_vs_naive": max_diff, "times": times,
                      "median_s": statistics.median(times), "min_s": min(times), "cpu_times": cpu_times,
                      "cpu_median_s": statistics.median(cpu_times), "threads": torch.get_num_threads(),
                      "tokens": tokens,
                      "peak_rss_gb": peak_gb, "loaded_rss_gb": rss_loaded / 1024**2}))


def _run_variant(args: argparse.Namespace, c: int, dtype: str, variant: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--variant", variant, "--c", str(c),
           "--dtype", dtype, "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--p", str(args.p),
           "--r", str(args.r), "--model", args.model, "--device", args.device, "--attn", args.attn,
           "--queries", str(args.queries)] + (["--random-init"] if args.random_init else []) + \
          ([] if args.check else ["--no-check"])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        if "OutOfMemoryError" in proc.stderr or "out of memory" in proc.stderr.lower():
            # the point of packing: the naive batch may not fit at all; report it and go on
            return {"variant": variant, "c": c, "dtype": dtype, "oom": True}
        raise SystemExit(f"variant {variant} C={c} {dtype} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print_row(r: dict) -> None:
    if r.get("oom"):
        print(f"{r['c']:>2} {r['dtype']:>5} {r['variant']:>12} {'out of memory':>26}", flush=True)
        return
    diff = r["max_abs_diff_vs_naive"]
    print(f"{r['c']:>2} {r['dtype']:>5} {r['variant']:>12} {r['median_s']:>8.2f} {r['cpu_median_s']:>8.2f} "
          f"{r['tokens'] / r['median_s']:>8.0f} {r['peak_rss_gb']:>8.2f} "
          f"{'' if diff is None else format(diff, '.2e'):>9}", flush=True)


def _measure_round(args: argparse.Namespace, c: int, dtype: str, results: list) -> dict[str, dict]:
    """One fresh subprocess per variant, run back to back: ratios are taken within a round, so a machine whose
    speed drifts over minutes (a shared cloud host: the same step measured 2.8 s and 4.7 s an hour apart) still
    compares like with like."""
    row: dict[str, dict] = {}
    for variant in args.variants:
        r = _run_variant(args, c, dtype, variant)
        results.append(r)
        _print_row(r)
        if not r.get("oom"):
            row[variant] = r
    return row


def _print_ratios(c: int, dtype: str, rounds: list[dict[str, dict]]) -> None:
    """Per-round ratios and their median (wall and process-CPU seconds)."""

    def ratio(top: str, bottom: str, key: str) -> list[float]:
        return [r[top][key] / r[bottom][key] for r in rounds if top in r and bottom in r]

    def show(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}x" + (f" (rounds: {', '.join(f'{v:.2f}' for v in values)})"
                                                       if len(values) > 1 else "")

    for top, bottom, what in (("bare", "packed", "speed-up bare/packed"), ("bare", "naive", "speed-up bare/naive"),
                              ("bare-packed", "packed", "throughput packed SAMI / bare f+b of the same batch")):
        wall, cpu = ratio(top, bottom, "median_s"), ratio(top, bottom, "cpu_median_s")
        best = ratio(top, bottom, "min_s")
        if wall:
            # noise on a shared machine only ever adds time, so the fastest steps are the steadiest comparison
            print(f"   C={c} {dtype}: {what} = {show(wall)} wall, {show(cpu)} cpu, {show(best)} fastest steps",
                  flush=True)
    memory = ratio("packed", "bare", "peak_rss_gb")
    if memory:
        print(f"   C={c} {dtype}: peak memory packed/bare = {show(memory)}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--c", type=int, nargs="+", default=[2, 4], help="constitutions per query")
    parser.add_argument("--dtype", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times the whole set of variants is run, back to back (ratios are per round)")
    parser.add_argument("--p", type=int, default=300, help="prompt tokens")
    parser.add_argument("--r", type=int, default=60, help="tokens per response")
    parser.add_argument("--model", default="smollm2", help="model reference (default: embedded SmolLM2-135M)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="attention implementation")
    parser.add_argument("--queries", type=int, default=1, help="queries per step (the batch)")
    parser.add_argument("--random-init", action="store_true",
                        help="build the model from its config.json with random weights (timing is unaffected)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the packed-vs-naive score comparison before timing")
    parser.add_argument("--quick", action="store_true", help="smoke run: C=2, bf16, 1 repeat")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device is None:
        from sami_toolkit.models.devices import resolve_auto_device

        args.device = resolve_auto_device("auto")
    if args.worker:
        args.c = args.c[0] if isinstance(args.c, list) else args.c
        args.dtype = args.dtype[0] if isinstance(args.dtype, list) else args.dtype
        _worker(args)
        return
    if args.quick:
        args.c, args.dtype, args.repeats, args.rounds = [2], ["bf16"], 1, 1

    from sami_toolkit.models.loading import resolve_model

    resolve_model(args.model)  # convert the embedded GGUF once, outside the timed subprocesses
    results = []
    print(f"P={args.p} R={args.r} queries={args.queries} model={args.model} random_init={args.random_init} "
          f"device={args.device} attn={args.attn} repeats={args.repeats} warmup={args.warmup} "
          f"rounds={args.rounds} "
          f"cpus={os.cpu_count()}", flush=True)
    header = (f"{'C':>2} {'dtype':>5} {'variant':>12} {'s/step':>8} {'cpu s':>8} {'tok/s':>8} "
              f"{'peak GB':>8} {'|S diff|':>9}")
    print(header, flush=True)
    for c in args.c:
        for dtype in args.dtype:
            rounds = [_measure_round(args, c, dtype, results) for _ in range(args.rounds)]
            _print_ratios(c, dtype, rounds)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
