"""The SAMI expert-iteration loop (spec §2.1), as resumable stages over a run directory.

For iteration η = 1..N:

1. **sample** — for each query of the current half of the pool (halves alternate, spec §2.6) draw C
   constitutions (spec §5.3) and generate one response per constitution with the *previous* model π_{η-1}
   (π_0 = π_BASE) and the sampling prompt (``sampling_prompt``: generation, CoT or training, spec §7;
   file-order principles, spec §2.8).  Samples are appended to
   ``samples.jsonl`` chunk by chunk, so a killed run resumes mid-way without regenerating anything;
2. **pairs** — post-process and filter (spec §2.7), counting every dropped query and why; kept queries get C
   training prompts with independently shuffled principle order (spec §2.8) and go to ``pairs.jsonl``;
3. **train** — from the **base** weights (spec §2.1: never from π_{η-1}) for B_η = η·N_b optimizer steps of
   ``batch_size`` queries, with the configured trainer; the trainer writes a safetensors checkpoint atomically;
4. **eval** — every configured evaluator on held-out queries (also for the base model as iteration 0), written
   to ``metrics.json``.

Each checkpoint gets a model card (``README.md``, :mod:`sami_toolkit.hub.model_card`), and with ``report_to`` every
step, iteration and file is also sent to experiment trackers (:mod:`sami_toolkit.tracking.run_tracking`), which can
fail without stopping the run.

Every random choice is seeded from ``(seed, iteration, query id)`` (:func:`sami_toolkit.run.plan.seeded_rng`),
never from a shared stream, so a resumed run draws exactly what an uninterrupted one would have.  Stage completion
is recorded in the manifest with a hash of the output (:mod:`sami_toolkit.core.run_dir`); the rows of
``samples.jsonl`` and ``pairs.jsonl`` are :class:`~sami_toolkit.core.records.SampleRow` and
:class:`~sami_toolkit.core.records.PairRow`.  What the run works on is resolved up front by
:func:`sami_toolkit.run.plan.plan_run`.
"""

from __future__ import annotations

import collections
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from sami_toolkit.core.errors import ConfigError, InfrastructureError
from sami_toolkit.run.plan import (Plan, build_trainer, cap_pairs, create, plan_run, postprocess_sample, queries_hash,
                                   sample_items, sampler_options, seeded_rng)

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from sami_toolkit.core.records import PairRow, Query, SampleRow
    from sami_toolkit.core.run_dir import RunDir
    from sami_toolkit.plugins.registry import Registry
    from sami_toolkit.run.config import RunConfig
    from sami_toolkit.text.constitutions import Constitution
    from sami_toolkit.tracking.run_tracking import RunTracking

#: env var for fault-injection tests: ``stage:iteration[:n]`` SIGKILLs the process at that point (see
#: :func:`_maybe_kill`); never set it outside tests.
FAULT_ENV = "SAMI_KIT_FAULT_INJECT"


def _maybe_kill(point: str) -> None:
    """Kill this process with SIGKILL when ``SAMI_KIT_FAULT_INJECT`` names ``point`` (resume tests)."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _constitution(row: "SampleRow") -> "Constitution":
    """The structured constitution a sample was generated under (rows written before ``SampleRow.items``
    existed carry the same information in their label)."""
    from sami_toolkit.text.constitutions import Constitution

    if row.items is not None:
        return Constitution.from_dict({"items": row.items})
    return Constitution.from_label(row.label)


class SamiLoop:
    """Runs (or resumes) one SAMI run in a run directory."""

    def __init__(self, config: "RunConfig", run_dir: "RunDir", plan: Plan, console: "Console", *,
                 registry: "Registry", tracking: "RunTracking | None" = None) -> None:
        self.config = config
        self.run = run_dir
        self.plan = plan
        self.console = console
        self.registry = registry
        self.tracking = tracking
        self._sampler: Any = None

    # ----------------------------------------------------------------------------------------- components
    @property
    def sampler(self) -> Any:
        if self._sampler is None:
            self._sampler = self.registry.create("samplers", self.config.sampler.name,
                                                 sampler_options(self.config, self.plan.templates,
                                                                 registry=self.registry),
                                                 where="sampler.options")
        return self._sampler

    def _close_sampler(self) -> None:
        if self._sampler is not None:
            self._sampler.close()

    def model_for(self, t: int) -> str:
        """π_t as a model reference: the base for t = 0, else iteration t's checkpoint."""
        return self.plan.base_model if t == 0 else str(self.run.checkpoint_dir(t))

    def _progress(self) -> Any:
        from sami_toolkit.core.consoles import progress_bar

        return progress_bar(self.console)

    # ------------------------------------------------------------------------------------------------ run
    def run_all(self) -> None:
        cfg = self.config
        if cfg.eval.at_iteration_zero and cfg.evaluators and not self.run.stage_done(0, "eval"):
            self.evaluate(0)
        if self.tracking is not None and self.run.stage_done(0, "eval"):
            self.tracking.iteration(0)
        for t in range(1, cfg.iterations + 1):
            self.run.set_iteration_info(t, half=("A", "B")[cfg.half_for(t)], steps=cfg.steps_for(t),
                                        sampled_with=("base" if t == 1 else f"iteration {t - 1}"))
            if not self.run.stage_done(t, "sample"):
                self.sample(t)
            if not self.run.stage_done(t, "pairs"):
                self.make_pairs(t)
            if not self.run.stage_done(t, "train"):
                self.train(t)
            if cfg.evaluators and not self.run.stage_done(t, "eval"):
                self.evaluate(t)
            self.print_iteration(t)
            if self.tracking is not None:
                self.tracking.iteration(t)
        self._close_sampler()
        self.run.finish()
        from sami_toolkit.report.run_page import write_report
        from sami_toolkit.report.summary import write_summary

        write_summary(self.run, cfg)
        write_report(self.run.root)
        if self.tracking is not None:
            self.tracking.finish("success")

    def _write_card(self, t: int, *, refresh: bool = False) -> None:
        """Iteration ``t``'s model card in its checkpoint; a card that cannot be built is a warning, never a
        failed iteration (the weights are what the stage produced)."""
        from sami_toolkit.hub.model_card import write_model_card

        try:
            write_model_card(self.run.root, t)
        except Exception as exc:  # noqa: BLE001 - a card is documentation: report and carry on
            from rich.markup import escape

            self.console.print(f"[yellow]warning: iteration {t}: no model card written "
                               f"({escape(f'{type(exc).__name__}: {exc}')})[/yellow]", highlight=False)
            return
        if refresh:
            self.run.refresh_hash(t, "train")

    # --------------------------------------------------------------------------------------------- sample
    def sample(self, t: int) -> None:
        from sami_toolkit.core.io import JsonlAppender
        from sami_toolkit.core.records import SampleRow

        started = time.perf_counter()
        path = self.run.samples_path(t)
        done = {row.key for row in self.run.read_samples(t)}
        items = sample_items(self.config, self.plan, t)
        todo = [it for it in items if (it["query_id"], it["index"]) not in done]
        model = self.model_for(t - 1)
        if done:
            self.console.print(f"iteration {t}: resuming sampling, {len(done)} of {len(items)} responses already "
                               "written")
        chunk = max(1, int(getattr(self.sampler.options, "batch_size", 8)))
        pid = os.getpid()
        with self._progress() as bar, JsonlAppender(path) as out:
            task = bar.add_task(f"iteration {t}: sampling", total=len(items), completed=len(items) - len(todo),
                                info=f"with {'base' if t == 1 else f'π_{t - 1}'}")
            for n, start in enumerate(range(0, len(todo), chunk), start=1):
                part = todo[start:start + chunk]
                raw = self.sampler.generate(model, [it["prompt"] for it in part])
                if len(raw) != len(part):
                    raise InfrastructureError(f"sampler '{self.config.sampler.name}' returned {len(raw)} responses "
                                              f"for {len(part)} prompts")
                out.extend([SampleRow(query_id=it["query_id"], index=it["index"], label=it["label"],
                                      constitution=it["constitution"], raw=text, iteration=t, pid=pid,
                                      time=round(time.time(), 3), items=it["items"]).to_dict()
                            for it, text in zip(part, raw)])
                bar.advance(task, len(part))
                _maybe_kill(f"sample:{t}:{n}")
        self._close_sampler()
        self.run.mark_done(t, "sample", path, n=len(items), seconds=round(time.perf_counter() - started, 3))

    # ---------------------------------------------------------------------------------------------- pairs
    def _ordered_samples(self, t: int) -> dict[str, list["SampleRow"]]:
        """Each query's C samples, in constitution order; a query with a missing sample is an error."""
        path = self.run.samples_path(t)
        by_query: dict[str, dict[int, SampleRow]] = collections.defaultdict(dict)
        for row in self.run.read_samples(t):
            by_query[row.query_id][row.index] = row
        n = self.config.constitutions.n
        ordered = {}
        for q in self.plan.halves[self.config.half_for(t)]:
            samples = by_query.get(q.id, {})
            if len(samples) != n:
                raise ConfigError(f"{path}: query {q.id} has {len(samples)} of {n} responses; delete the file to "
                                  "resample")
            ordered[q.id] = [samples[j] for j in range(n)]
        return ordered

    def _pair(self, t: int, q: "Query", samples: Sequence["SampleRow"], responses: list[str]) -> "PairRow":
        """The training record of a kept query: C training prompts, each with its own principle order (spec §2.8)."""
        from sami_toolkit.core.records import PairRow
        from sami_toolkit.text.prompts import build_prompt, format_question

        plan = self.plan
        rng = seeded_rng(self.config.seed, "train-shuffle", t, q.id)
        question = format_question(plan.templates, q.text)
        train_prompts = [build_prompt(plan.templates.training, question=question,
                                      constitution=_constitution(s).shuffled(rng).render(plan.pset))
                         for s in samples]
        return PairRow(query_id=q.id, query=q.text, constitutions=[s.constitution for s in samples],
                       labels=[s.label for s in samples], train_prompts=train_prompts, responses=responses,
                       iteration=t)

    def make_pairs(self, t: int) -> None:
        started = time.perf_counter()
        from sami_toolkit.core.io import atomic_write_json, atomic_write_jsonl
        from sami_toolkit.text.postprocess import filter_pair

        cfg, plan = self.config, self.plan
        ordered = self._ordered_samples(t)
        options = cfg.filter_options()
        dropped: collections.Counter[str] = collections.Counter()
        pairs = []
        half = plan.halves[cfg.half_for(t)]
        for q in half:
            # the sampling prompt decides the clean-up: cut + prefill, the CoT final answer, or strip (spec §2.7)
            responses = [postprocess_sample(cfg, plan, s.raw) for s in ordered[q.id]]
            reason = filter_pair(cfg.task, responses, options, plan.positive_index)
            if reason is not None:
                dropped[reason] += 1
                continue
            pairs.append(self._pair(t, q, ordered[q.id], responses))
        pairs, capped = cap_pairs(cfg, half, pairs)  # data.max_pairs_per_subset (spec §2.5: n_examples)
        stats = {"queries": len(half), "kept": len(pairs), "dropped": sum(dropped.values()),
                 "dropped_by_reason": dict(sorted(dropped.items()))}
        if capped:
            stats["over_max_pairs"] = capped
        atomic_write_json(self.run.iteration_dir(t) / "filter.json", stats)
        atomic_write_jsonl(self.run.pairs_path(t), [p.to_dict() for p in pairs])
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())) or "none"
        self.console.print(f"iteration {t}: {len(pairs)} of {len(half)} queries kept; dropped {stats['dropped']} "
                           f"({reasons})")
        self._check_enough_pairs(t, len(pairs), len(half), reasons)
        self.run.mark_done(t, "pairs", self.run.pairs_path(t), kept=len(pairs), dropped=dict(dropped),
                           seconds=round(time.perf_counter() - started, 3))
        _maybe_kill(f"pairs:{t}")

    def _check_enough_pairs(self, t: int, kept: int, queries: int, reasons: str) -> None:
        """Training needs one full batch; stop with the counts (samples and pairs stay on disk) otherwise."""
        if not kept:
            raise ConfigError(f"iteration {t}: every one of {queries} queries was filtered out ({reasons}); "
                              f"samples are kept in {self.run.samples_path(t)}",
                              hint="inspect the samples, then relax `filter` (spec §2.7) or raise "
                                   "sampler.options.max_new_tokens in a new run")
        if kept < self.config.batch_size:
            raise ConfigError(f"iteration {t}: only {kept} pairs survived filtering but one batch needs "
                              f"batch_size={self.config.batch_size} (dropped: {reasons}); samples and pairs are "
                              f"kept in {self.run.iteration_dir(t)}",
                              hint="lower batch_size, enlarge data.pool_size or relax `filter` in a new run")


    # ---------------------------------------------------------------------------------------------- train
    def train(self, t: int) -> None:
        from sami_toolkit.core.io import atomic_write_json, remove_tree
        from sami_toolkit.training.request import TrainRequest

        cfg = self.config
        started = time.perf_counter()
        self._close_sampler()
        out = self.run.checkpoint_dir(t)
        remove_tree(out)  # a checkpoint without a "done" mark is from a killed run: retrain (deterministic)
        for stale in out.parent.glob(f".{out.name}.*"):
            remove_tree(stale)
        trainer = build_trainer(cfg, self.console, registry=self.registry)
        # the loss is resolved here, not in the trainer: training code never looks components up
        loss = self.registry.create("losses", cfg.train.loss, cfg.train.loss_options, where="train.loss_options")
        steps = cfg.steps_for(t)
        with self._progress() as bar:
            task = bar.add_task(f"iteration {t}: training from base", total=steps, info="")

            def progress(step: int, metrics: dict) -> None:
                bar.update(task, completed=step, info=f"loss {metrics.get('loss', float('nan')):.4f}")
                if self.tracking is not None:
                    self.tracking.step(t, {"step": step, **metrics})
                _maybe_kill(f"train:{t}:{step}")

            result = trainer.train(TrainRequest(
                base_model=cfg.model, pairs_path=self.run.pairs_path(t), output_dir=out, steps=steps,
                batch_size=cfg.batch_size, seed=cfg.seed, settings=cfg.train, loss=loss, progress=progress,
                trust_remote_code=cfg.trust_remote_code))
        if not any((Path(result.checkpoint_dir) / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise InfrastructureError(f"trainer '{trainer.name}' reported {result.checkpoint_dir} but wrote no "
                                      "config.json (or LoRA adapter_config.json) there")
        from sami_toolkit.training.precision import resolve_device, resolve_precision

        # the concrete precision (``auto`` depends on the machine), so two runs' numbers can be told apart; the
        # trainer says what it ran in, and a trainer that does not gets what the setting resolves to here
        precision = result.precision or resolve_precision(cfg.train, resolve_device(cfg.train.device))
        atomic_write_json(self.run.iteration_dir(t) / "train.json",
                          {"trainer": trainer.name, "steps": result.steps, "batch_size": cfg.batch_size,
                           "from": "base", "base_model": cfg.model, "precision": precision,
                           "metrics": result.metrics})
        self._write_card(t)  # before the done mark: the checkpoint's hash covers its card
        self.run.mark_done(t, "train", Path(result.checkpoint_dir), steps=result.steps, trainer=trainer.name,
                           seconds=round(time.perf_counter() - started, 3))
        _maybe_kill(f"checkpoint:{t}")

    # ----------------------------------------------------------------------------------------------- eval
    def evaluate(self, t: int) -> None:
        from sami_toolkit.core.io import atomic_write_json, read_json
        from sami_toolkit.evaluation.context import EvalContext

        cfg, plan = self.config, self.plan
        started = time.perf_counter()
        judge = create(self.registry, "judges", cfg.judge, "judge") if cfg.judge is not None else None
        eval_dir = self.run.eval_dir(t)
        eval_dir.mkdir(parents=True, exist_ok=True)
        metrics: dict[str, Any] = {"iteration": t, "steps": cfg.steps_for(t) if t else 0}
        for ref in cfg.evaluators:
            evaluator = create(self.registry, "evaluators", ref, f"evaluators[{ref.name}]")
            self.console.print(f"iteration {t}: evaluating '{ref.name}' on {len(plan.eval_queries)} held-out queries")
            context = EvalContext(model=self.model_for(t), base_model=plan.base_model, queries=plan.eval_queries,
                                  principle_set=plan.pset, templates=plan.templates, task=cfg.task,
                                  sampler=self.sampler, judge=judge, out_dir=eval_dir, seed=cfg.seed,
                                  baseline_model=cfg.eval.baseline_model,
                                  options={"cache_dir": str(self.run.root / "eval-cache"), "iteration": t,
                                           **cfg.eval.options})
            result = evaluator.evaluate(context)
            metrics.update(result)
            self._close_sampler()
        if t > 0:
            filt = read_json(self.run.iteration_dir(t) / "filter.json", {})
            train = read_json(self.run.iteration_dir(t) / "train.json", {})
            metrics.update({"pairs_kept": filt.get("kept"), "pairs_dropped": filt.get("dropped"),
                            "dropped_by_reason": filt.get("dropped_by_reason", {})})
            if train.get("metrics"):
                metrics["train_loss_last"] = train["metrics"][-1].get("loss")
        atomic_write_json(self.run.metrics_path(t), metrics)
        if t > 0:
            self._write_card(t, refresh=True)  # now with the iteration's metrics table
        self.run.mark_done(t, "eval", self.run.metrics_path(t), seconds=round(time.perf_counter() - started, 3))

    # ---------------------------------------------------------------------------------------------- report
    def print_iteration(self, t: int) -> None:
        from sami_toolkit.report.summary import summary_table

        self.console.print(summary_table(self.run, self.config, upto=t))


# ------------------------------------------------------------------------------------------------- entry
def _quiet_libraries(config: "RunConfig") -> None:
    """The console carries the run's own lines: no transformers tqdm bars (they interleave with the run's rich
    progress), and DeepSpeed's "Setting accelerator to CPU" only when the deepspeed trainer is the engine."""
    from sami_toolkit.models.loading import quiet_libraries

    quiet_libraries(keep_deepspeed=config.trainer.name == "deepspeed")


def _check_config(run: "RunDir", root: Path, config: "RunConfig", resume: bool) -> None:
    """A resume needs the configuration the run started with; a new run needs a directory without a run.

    A refused resume lists what changed, key by key (``train.lr: 0.001 -> 0.5``): two hashes say *that* the
    config differs, not which ``-o`` or edit did it."""
    if resume:
        recorded, config_hash = run.manifest.get("config_hash"), config.content_hash()
        if recorded != config_hash:
            listed = "\n".join(f"  {line}" for line in run.config_changes(config.hash_payload()))
            detail = (f"; what differs (recorded -> now):\n{listed}" if listed else
                      f" (hash {str(recorded)[:12]}…, now {config_hash[:12]}…; no key of config.yaml differs, so "
                      "a default changed, e.g. with a sami-kit upgrade)")
            raise ConfigError(f"{root}: the run was started with a different configuration; --resume continues a "
                              f"run unchanged{detail}",
                              hint="drop the -o overrides (or the changed config file) to continue this run, or "
                                   "start a new run with --run-dir DIR to use the changed config")
    elif run.exists():
        raise ConfigError(f"run directory {root} already holds a run", hint=f"continue it with `sami-kit run "
                          f"--resume {root}`, or choose another with --run-dir")


def _resume(run: "RunDir", root: Path, data_hash: str, console: "Console") -> None:
    """Record a resume; the queries must hash as when the run started (the files behind them may have changed)."""
    recorded_data = run.manifest.get("data", {}).get("queries_hash")
    if recorded_data not in (None, data_hash):
        raise ConfigError(f"{root}: the query data changed since the run started (the files behind "
                          "data.source / data.eval_source differ); --resume needs the same queries",
                          hint="restore the original data files, or start a new run")
    run.record_resume()
    console.print(f"resuming run in {root}")


def _start(run: "RunDir", config: "RunConfig", config_hash: str, plan: Plan, data_hash: str,
           registry: "Registry", console: "Console") -> None:
    """Create the run directory: config, principles and a manifest with the plugins and the data split."""
    run.create(config=config.model_dump(mode="json"), config_hash=config_hash, seed=config.seed,
               principles=plan.pset.model_dump(mode="json"), plugins=registry.system.records)
    run.manifest["data"] = {"half_sizes": [len(h) for h in plan.halves],
                            "eval_queries": len(plan.eval_queries), "base_model_resolved": plan.base_model,
                            "queries_hash": data_hash}
    run.save_manifest()
    console.print(f"run directory: {run.root}")


def run_sami(config: "RunConfig", *, resume: bool = False, console: "Console | None" = None,
             run_dir: str | Path | None = None, registry: "Registry | None" = None) -> Path:
    """Run or resume ``config`` in its run directory; returns the directory.

    Components come from ``registry`` (the CLI passes its invocation's; default: the installed plugins, loaded
    now), and its plugin load records go into the manifest.

    A new run refuses an existing run directory (``--resume`` continues it); a resume refuses a config whose
    hash differs from the one recorded when the run started (exit 2)."""
    from sami_toolkit.core.consoles import console as make_console
    from sami_toolkit.core.run_dir import RunDir

    console = console or make_console()
    _quiet_libraries(config)
    root = Path(run_dir) if run_dir is not None else config.resolved_run_dir()
    run = RunDir(root)
    _check_config(run, root, config, resume)
    if registry is None:
        from sami_toolkit.plugins.registry import load_plugins

        registry = load_plugins()
    from sami_toolkit.run.preflight import check_run_config

    # every component, option, file and count the config names, before the iteration-0 evaluation or any
    # sampling: a misspelt trainer fails now, not at the train stage an hour later (its notes: plan_run's below)
    check_run_config(config, registry).raise_for_problems()
    plan = plan_run(config, console, registry=registry)
    for note in plan.notes:
        console.print(f"[yellow]note: {note}[/yellow]")
    data_hash = queries_hash(plan)
    if resume:
        _resume(run, root, data_hash, console)
    else:
        _start(run, config, config.content_hash(), plan, data_hash, registry, console)
    tracking = _open_tracking(config, run, registry, console)
    try:
        SamiLoop(config, run, plan, console, registry=registry, tracking=tracking).run_all()
    except KeyboardInterrupt:
        tracking.finish("interrupted")
        raise
    except BaseException:
        tracking.finish("failed")
        raise
    return root


def _open_tracking(config: "RunConfig", run: "RunDir", registry: "Registry", console: "Console") -> "RunTracking":
    """The run's trackers (``report_to``); their problems are printed as warnings, never raised."""
    from rich.markup import escape

    from sami_toolkit.tracking.run_tracking import RunTracking

    def warn(line: str) -> None:
        console.print(f"[yellow]warning: {escape(line)}[/yellow]", highlight=False)

    return RunTracking.open(config.report_to, run, config, registry, report=warn)
