"""Benchmark: ``sami-kit eval stats`` on 100,000 synthetic judged items, bootstrap included (target < 10 s).

Run: ``python bench/bench_stats.py [N] [BOOTSTRAP]``. Prints the wall time of the CLI command (reading the JSONL,
every statistic, the refitting LC bootstrap) and of :func:`sami_toolkit.evaluation.stats.compute_stats` alone.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_items(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for i in range(n):
            lt, lb = rng.randint(20, 600), rng.randint(20, 600)
            p_win = 0.45 + 0.3 * (lt > lb)
            u = rng.random()
            outcome = None if u < 0.01 else (0.5 if u < 0.08 else (1 if rng.random() < p_win else 0))
            fh.write(json.dumps({"id": str(i), "outcome": outcome, "len_test": lt, "len_baseline": lb}) + "\n")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    boot = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.jsonl"
        write_items(path, n)
        from sami_toolkit.evaluation.stats import compute_stats, load_items

        t0 = time.perf_counter()
        stats = compute_stats(load_items(path), bootstrap=boot, seed=1)
        t1 = time.perf_counter()
        print(f"compute_stats: n={n:,} bootstrap={boot}: {t1 - t0:.2f} s "
              f"(win_rate={stats.win_rate:.4f}, lc={stats.lc_win_rate:.4f} "
              f"[{stats.lc_ci_low:.4f}, {stats.lc_ci_high:.4f}])")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "sami_toolkit", "eval", "stats", str(path), "--json",
                               "--bootstrap", str(boot)], capture_output=True, text=True)
        t1 = time.perf_counter()
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
        print(f"sami-kit eval stats --json --bootstrap {boot}: {t1 - t0:.2f} s ({status})")


if __name__ == "__main__":
    main()
