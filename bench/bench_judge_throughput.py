"""Judge throughput: the litellm judge against the local OpenAI-compatible server with a fixed latency.

With ``latency`` seconds per call and ``concurrency`` calls in flight, the ideal rate is concurrency / latency
judged items per second (32 / 0.1 s = 320/s). The target is at least 0.8 of it: anything less means client-side
overhead (litellm, the event loop, the cache) rather than the API bounds a real evaluation.

The server runs in a separate process so that its request threads do not compete with the judge for the GIL.

    python bench/bench_judge_throughput.py                 # 32 in flight, 100 ms latency, 640 items
    python bench/bench_judge_throughput.py --items 2000 --concurrency 64 --json
    python bench/bench_judge_throughput.py --transport litellm   # through litellm instead of straight HTTP
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _serve(latency: float, port_queue: "mp.Queue[int]", stop: "mp.Event") -> None:  # type: ignore[type-arg]
    from sami_toolkit.testing.server import OpenAIServer

    with OpenAIServer(latency=latency) as server:
        port_queue.put(server.port)
        stop.wait()


def _pairs(n: int, offset: int) -> list:
    from sami_toolkit.judging.pairwise import ComparisonPair

    return [ComparisonPair(id=f"q{offset + i}", query=f"question {offset + i}", constitution="1. Be helpful.",
                           candidate=f"candidate {offset + i}", baseline=f"baseline {offset + i}", task="hh-rlhf")
            for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=640, help="judged items (after a warm-up batch)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1, help="server latency per call, seconds")
    parser.add_argument("--cache", action="store_true", help="also write every verdict to a temporary SQLite cache")
    parser.add_argument("--transport", default="auto", choices=["auto", "litellm", "openai"],
                        help="the judge's transport (auto = straight HTTP to this OpenAI-compatible server)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    ctx = mp.get_context("spawn")
    port_queue, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_serve, args=(args.latency, port_queue, stop), daemon=True)
    proc.start()
    try:
        port = port_queue.get(timeout=60)
        os.environ["SAMI_KIT_BENCH_KEY"] = "sk-bench"
        import tempfile

        from sami_toolkit.judging.pairwise import count_outcomes, judge_pairs
        from sami_toolkit import get_component

        tmp = tempfile.mkdtemp(prefix="sami-kit-bench-")
        judge = get_component("judges", "litellm", {
            "model": "openai/gpt-4-0613", "api_base": f"http://127.0.0.1:{port}/v1", "api_key_env": "SAMI_KIT_BENCH_KEY",
            "concurrency": args.concurrency, "cache_path": os.path.join(tmp, "j.sqlite") if args.cache else "none",
            "max_retries": 0, "timeout": 30, "transport": args.transport})
        judge_pairs(judge, _pairs(args.concurrency, offset=10**6))  # warm-up: imports, connection pool
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        outcomes = judge_pairs(judge, _pairs(args.items, offset=0))
        elapsed = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        stop.set()
        proc.join(timeout=5)
    counts = count_outcomes(outcomes)
    rate = args.items / elapsed
    ideal = args.concurrency / args.latency
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    result = {"items": args.items, "concurrency": args.concurrency, "latency_s": args.latency,
              "elapsed_s": round(elapsed, 3), "items_per_s": round(rate, 1), "ideal_items_per_s": round(ideal, 1),
              "fraction_of_ideal": round(rate / ideal, 3), "client_cpu_ms_per_item": round(1000 * cpu / args.items, 2),
              "failed": counts["failed"], "cache": args.cache, "transport": args.transport, "cpus": os.cpu_count(),
              "load_average_1m": round(os.getloadavg()[0], 2)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.items} items, concurrency {args.concurrency}, latency {args.latency * 1000:.0f} ms, "
              f"transport {args.transport}: "
              f"{rate:.1f} items/s = {rate / ideal:.2f} of the ideal {ideal:.0f}/s "
              f"({result['client_cpu_ms_per_item']} ms client CPU per item, {counts['failed']} failed, "
              f"load average {result['load_average_1m']})")
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
