"""Simulation benchmark of the sequential gate (issue 18 §1): wrong-verdict rates and judge calls against the
fixed-n gate, on Bernoulli and tie outcome models, true win rates 0.30 … 0.70, n_max = 250 and 1000.

    python bench/bench_sequential.py [--reps 4000] [--seed 0] [--margin 0] [--json FILE]

A pass is wrong when the true rate is at or below 0.5 − margin, a regression when it is at or above. The fixed-n
gate always makes n_max judge calls; "saved" is 1 − mean calls / n_max. The requirement checked at the end: both
wrong-verdict rates ≤ alpha (0.05) at every rate, and ≥ 40% of the calls saved wherever the true rate is ≥ 10 points
from the threshold. Prints numbers; asserts nothing (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import json
import time


def betting(rate: float, n_max: int, *, reps: int, alpha: float = 0.05, seed: int = 0, threshold: float = 0.5,
            c: float = 0.75) -> tuple[float, float, float]:
    """The alternative the docs compare with: a betting (hedged-capital) test of Waudby-Smith & Ramdas (2023), with
    their predictable plug-in bet, one capital process per direction at alpha/2, checked after *every* item
    (anytime-valid). Bernoulli outcomes. Returns (pass rate, regression rate, mean items judged)."""
    import math

    import numpy as np

    rng = np.random.default_rng(seed)
    x = (rng.random((reps, n_max)) < rate).astype(float)
    up = np.zeros(reps)
    down = np.zeros(reps)
    var = np.full(reps, 0.25)
    stop = np.full(reps, n_max)
    decision = np.zeros(reps, dtype=int)
    open_ = np.ones(reps, dtype=bool)
    bar = math.log(2 / alpha)
    total = np.zeros(reps)
    total2 = np.zeros(reps)
    for t in range(1, n_max + 1):
        lam = np.sqrt(2 * math.log(2 / alpha) / (var * t * math.log(1 + t)))
        xt = x[:, t - 1]
        up += np.log1p(np.minimum(lam, c / threshold) * (xt - threshold))
        down += np.log1p(np.minimum(lam, c / (1 - threshold)) * (threshold - xt))
        hit_up, hit_down = open_ & (up >= bar), open_ & (down >= bar)
        decision[hit_up], decision[hit_down] = 1, -1
        stop[hit_up | hit_down] = t
        open_ &= ~(hit_up | hit_down)
        total += xt
        total2 += xt * xt
        mean = (0.5 + total) / (t + 1)
        var = (0.25 + total2 - 2 * mean * total + t * mean * mean) / (t + 1)  # regularised running variance
    return float((decision == 1).mean()), float((decision == -1).mean()), float(stop.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margin", type=float, default=0.0)
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()
    from sami_toolkit.evaluation.stats.sequential import SequentialDesign, simulate, wrong_rates

    rates = [round(0.30 + 0.05 * i, 2) for i in range(9)]
    threshold = 0.5 - args.margin
    rows, problems = [], []
    start = time.perf_counter()
    print(f"sequential gate: Lan-DeMets Pocock-type spending, rounds of 5%, alpha 0.05 (2.5% per side), futility 2%; "
          f"margin {args.margin:g}; {args.reps} replicates per cell")
    print(f"{'n_max':>5} {'ties':>5} {'rate':>5} | {'seq pass':>8} {'seq reg':>8} {'wrong':>6} {'mean n':>7} "
          f"{'saved':>6} | {'fix pass':>8} {'fix reg':>8}")
    for n_max in (250, 1000):
        design = SequentialDesign.plan(n_max, min_items=20)
        for tie in (0.0, 0.3):
            for i, rate in enumerate(rates):
                reps = args.reps if n_max == 250 else max(500, args.reps // 2)
                row = simulate(design, rate, tie_rate=tie, margin=args.margin, reps=reps,
                               seed=args.seed + 1000 * i + n_max + int(tie * 10))
                wp, wf = wrong_rates(row, margin=args.margin)
                far = abs(rate - threshold) >= 0.1 - 1e-9
                rows.append({**row.to_dict(), "wrong_pass": wp, "wrong_regression": wf, "far": far})
                if max(wp, wf) > design.alpha:
                    problems.append(f"wrong verdicts {max(wp, wf):.3f} > alpha at n_max {n_max}, ties {tie}, rate {rate}")
                if far and row.calls_saved < 0.40:
                    problems.append(f"only {row.calls_saved:.1%} saved at n_max {n_max}, ties {tie}, rate {rate}")
                print(f"{n_max:>5} {tie:>5.1f} {rate:>5.2f} | {row.seq_pass:>8.3f} {row.seq_fail:>8.3f} "
                      f"{max(wp, wf):>6.3f} {row.seq_mean_n:>7.1f} {row.calls_saved:>6.1%} | "
                      f"{row.fixed_pass:>8.3f} {row.fixed_fail:>8.3f}")
    print("\nalternative: betting test (hedged capital, predictable plug-in bet), checked after every item, n_max 250:")
    print(f"{'rate':>5} | {'pass':>6} {'reg':>6} {'mean n':>7} {'saved':>6}")
    for rate in (0.4, 0.5, 0.6, 0.7):
        bp, bf, bn = betting(rate, 250, reps=args.reps, seed=args.seed + 7)
        print(f"{rate:>5.2f} | {bp:>6.3f} {bf:>6.3f} {bn:>7.1f} {1 - bn / 250:>6.1%}")
    print(f"{time.perf_counter() - start:.1f} s")
    print("requirement met" if not problems else "requirement NOT met:\n  " + "\n  ".join(problems))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
