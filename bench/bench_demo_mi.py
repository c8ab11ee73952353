"""Benchmark: does SAMI raise held-out mutual information in the demo setting?

Reports, for the base model (t = 0) and every iteration's checkpoint, on the demo's 16 held-out posts with all
4 constitutions of tldr-mistral (spec §1.6): the constitution-side InfoNCE bound (headline), the two-sided InfoNCE
estimate, the paper's estimator, and mean response length, each ± SEM; and the held-out MI of ``mi-heldout``
(the base model's responses under the all-positive and all-negative constitutions, scored by each checkpoint).
Metrics missing from the run (an evaluator it did not run) are computed here.

    python bench/bench_demo_mi.py                      # runs `--preset demo` into a new directory first
    python bench/bench_demo_mi.py runs/demo-XYZ        # reuses a finished demo run (reads its metrics.json)
    python bench/bench_demo_mi.py runs/demo-XYZ --recompute   # re-evaluates every checkpoint with `mi`
    python bench/bench_demo_mi.py -o train.lr=1e-5     # a variant of the demo (new run)

Writes ``bench_mi.json`` into the run directory and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from sami_toolkit.core.metrics import metric

#: (column title, metric key), titles from the one metric vocabulary
KEYS = tuple((metric(key).short_label, key) for key in (
    "mi_infonce_constitutions", "heldout_mi_infonce_constitutions", "mi_infonce", "mi_paper", "mean_length_tokens"))
#: evaluator -> the metric whose absence means "not run yet on this checkpoint"
EVALUATORS = (("mi", "mi_infonce_constitutions"), ("mi-heldout", "heldout_mi_infonce_constitutions"))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="an existing demo run directory (default: run the demo)")
    parser.add_argument("--recompute", action="store_true", help="re-run the `mi` evaluator on every checkpoint")
    parser.add_argument("-o", dest="overrides", action="append", default=[], help="override for a new demo run")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from sami_toolkit.core.config import load_yaml
    from sami_toolkit.run.loop import run_sami
    from sami_toolkit.run.plan import plan_run
    from sami_toolkit.run.config import config_from_mapping, load_run_config

    console = Console(stderr=True)
    started = time.time()
    if args.run_dir is None:
        config = load_run_config(preset="demo", overrides=args.overrides)
        run_dir = Path("runs") / f"bench-demo-{time.strftime('%Y%m%d-%H%M%S')}"
        run_sami(config, console=console, run_dir=run_dir)
    else:
        run_dir = Path(args.run_dir)
        config = config_from_mapping(load_yaml(run_dir / "config.yaml"), where=str(run_dir / "config.yaml"))

    rows = []
    plan = registry = None
    for t in range(0, config.iterations + 1):
        metrics_path = run_dir / "iterations" / str(t) / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        for name, marker in EVALUATORS:
            if not args.recompute and marker in metrics:
                continue
            from sami_toolkit.evaluation.context import EvalContext
            from sami_toolkit import load_plugins

            registry = registry or load_plugins()
            plan = plan or plan_run(config, console, registry=registry)
            model = plan.base_model if t == 0 else str(run_dir / "iterations" / str(t) / "checkpoint")
            sampler = registry.create("samplers", config.sampler.name, config.sampler.options)
            ref = next((e for e in config.evaluators if e.name == name), None)
            options = ref.options if ref else {k: v for k, v in (next(
                (e.options for e in config.evaluators if e.name == "mi"), None) or {}).items()
                if k in ("batch_size", "dtype", "device")}
            evaluator = registry.create("evaluators", name, options)
            out_dir = run_dir / "bench" / str(t)
            out_dir.mkdir(parents=True, exist_ok=True)
            metrics.update(evaluator.evaluate(EvalContext(
                model=model, base_model=plan.base_model, queries=plan.eval_queries, principle_set=plan.pset,
                templates=plan.templates, task=config.task, sampler=sampler, judge=None, out_dir=out_dir,
                seed=config.seed, options={"cache_dir": str(run_dir / "bench" / "cache")})))
            sampler.close()
        rows.append({"iteration": t, "steps": config.steps_for(t) if t else 0,
                     **{key: metrics.get(key) for _, key in KEYS},
                     **{f"{key}_sem": metrics.get(f"{key}_sem") for _, key in KEYS}})

    table = Table(title=f"held-out MI, demo setting (lr {config.train.lr:g}, {config.train.optimizer}, "
                        f"batch {config.batch_size}, N_b {config.batches_per_iteration})")
    table.add_column("t")
    table.add_column("steps")
    for title, _ in KEYS:
        table.add_column(title, justify="right")
    for row in rows:
        cells = []
        for _, key in KEYS:
            value, sem = row[key], row[f"{key}_sem"]
            text = "n/a" if value is None else f"{value:+.3f}"
            cells.append(f"{text} ± {sem:.3f}" if value is not None and sem is not None else text)
        table.add_row(str(row["iteration"]), str(row["steps"]), *cells)
    Console().print(table)
    result = {"run_dir": str(run_dir), "lr": config.train.lr, "optimizer": config.train.optimizer,
              "batch_size": config.batch_size, "batches_per_iteration": config.batches_per_iteration,
              "eval_queries": config.eval.size, "rows": rows, "seconds": round(time.time() - started, 1)}
    (run_dir / "bench_mi.json").write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {run_dir / 'bench_mi.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
