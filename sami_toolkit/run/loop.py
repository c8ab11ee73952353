"""The SAMI expert-iteration loop (spec §2.1), as resumable stages over a run directory.

For iteration η = 1..N:

1. **sample** — for each query of the current half of the pool (halves alternate, spec §2.6) draw C
   constitutions (spec §5.3) and generate one response per constitution with the *previous* model π_{η-1}
   (π_0 = π_BASE) and the generation prompt (file-order principles, spec §2.8).  Samples are appended to
   ``samples.jsonl`` chunk by chunk, so a killed run resumes mid-way without regenerating anything;
2. **pairs** — post-process and filter (spec §2.7), counting every dropped query and why; kept queries get C
   training prompts with independently shuffled principle order (spec §2.8) and go to ``pairs.jsonl``;
3. **train** — from the **base** weights (spec §2.1: never from π_{η-1}) for B_η = η·N_b optimizer steps of
   ``batch_size`` queries, with the configured trainer; the trainer writes a safetensors checkpoint atomically;
4. **eval** — every configured evaluator on held-out queries (also for the base model as iteration 0), written
   to ``metrics.json``.

Every random choice is seeded from ``(seed, iteration, query id)``, never from a shared stream, so a resumed run
draws exactly what an uninterrupted one would have.  Stage completion is recorded in the manifest with the
output's content hash (:mod:`sami_toolkit.run.store`).
"""

from __future__ import annotations

import collections
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sami_toolkit.core.errors import ConfigError, InfrastructureError, UnknownComponentError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from sami_toolkit.core.components import Query
    from sami_toolkit.text.principles import PrincipleSet
    from sami_toolkit.text.prompts import PromptTemplates
    from sami_toolkit.run.config import RunConfig
    from sami_toolkit.run.store import RunDir

#: env var for fault-injection tests: ``stage:iteration[:n]`` SIGKILLs the process at that point (see
#: :func:`_maybe_kill`); never set it outside tests.
FAULT_ENV = "SAMI_KIT_FAULT_INJECT"


def _maybe_kill(point: str) -> None:
    """Kill this process with SIGKILL when ``SAMI_KIT_FAULT_INJECT`` names ``point`` (resume tests)."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _rng(*parts: Any) -> random.Random:
    """A generator seeded by a stable string, independent of anything drawn before (resume-safe)."""
    return random.Random(":".join(str(p) for p in parts))


@dataclass
class Plan:
    """What a run works on, resolved once from the config."""

    pset: "PrincipleSet"
    templates: "PromptTemplates"
    halves: list[list["Query"]]
    eval_queries: list["Query"]
    positive_index: int | None
    base_model: str
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ planning
def _get(kind: str, ref: Any, where: str) -> Any:
    from sami_toolkit.plugins.registry import get_component

    return get_component(kind, ref.name, ref.options, where=f"{where}.options")


def build_trainer(config: "RunConfig", console: "Console | None") -> Any:
    """The configured trainer; a missing ``deepspeed`` plugin falls back to ``torch`` with a message (the demo
    asks for deepspeed, which is a separate distribution)."""
    try:
        return _get("trainers", config.trainer, "trainer")
    except UnknownComponentError:
        if config.trainer.name != "deepspeed":
            raise
        if console is not None:
            console.print("[yellow]trainer 'deepspeed' is not installed (pip install -e plugins/sami-kit-deepspeed);"
                          " falling back to the built-in 'torch' trainer[/yellow]")
        from sami_toolkit.plugins.registry import get_component

        return get_component("trainers", "torch")


def sampler_options(config: "RunConfig", templates: "PromptTemplates") -> dict[str, Any]:
    """The sampler's options plus the task template's stop strings, when the sampler takes ``stop``."""
    from sami_toolkit.plugins.registry import get_registry

    options = dict(config.sampler.options)
    cls = get_registry().get("samplers", config.sampler.name)
    if "stop" in cls.Options.model_fields and "stop" not in options and templates.stop:
        options["stop"] = list(templates.stop)
    return options


def plan_run(config: "RunConfig", console: "Console | None" = None) -> Plan:
    """Load the principle set, templates and queries; split pool halves and held-out queries (spec §2.5–§2.6,
    §8.1).  Raises ConfigError for anything wrong with them, before any model is touched."""
    from sami_toolkit.models.loading import resolve_model
    from sami_toolkit.text.principles import load_principle_set
    from sami_toolkit.text.prompts import get_templates

    base = resolve_model(config.model)  # ConfigError (exit 2) if a path does not exist
    pset = load_principle_set(config.principles)
    templates = get_templates(config.task, config.templates)
    source = _get("query-sources", config.data.source, "data.source")
    queries = source.load()
    if config.data.eval_source is not None:
        eval_queries = _get("query-sources", config.data.eval_source, "data.eval_source").load()[: config.eval.size]
        pool = queries
    else:
        if len(queries) <= config.eval.size:
            raise ConfigError(f"data.source has {len(queries)} queries but eval.size={config.eval.size} are held "
                              "out for evaluation; lower eval.size or set data.eval_source")
        eval_queries = queries[-config.eval.size:]
        pool = queries[: -config.eval.size]
    notes = []
    n_halves = 2 if config.data.alternate_halves else 1
    half = config.data.pool_size or len(pool) // n_halves
    if half * n_halves > len(pool):
        available = len(pool) // n_halves
        notes.append(f"data.pool_size={half} per half but only {len(pool)} pool queries: using {available} per half")
        half = available
    if half < 1:
        raise ConfigError(f"the query pool has {len(pool)} queries: too few to form {n_halves} half/halves "
                          "(spec §2.6); add queries or set data.alternate_halves: false")
    halves = [pool[i * half:(i + 1) * half] for i in range(n_halves)]
    positive_index = 0 if config.constitutions.strategy == "positive_vs_negative" else None
    # check the strategy/C/k combination now rather than after the base model has been loaded
    from sami_toolkit.text.constitutions import sample_constitutions

    sample_constitutions(pset, config.constitutions.strategy, config.constitutions.n, random.Random(0),
                         config.constitutions.names, config.constitutions.k)
    return Plan(pset=pset, templates=templates, halves=halves, eval_queries=eval_queries,
                positive_index=positive_index, base_model=base, notes=notes)


# ------------------------------------------------------------------------------------------------- the loop
class SamiLoop:
    """Runs (or resumes) one SAMI run in a run directory."""

    def __init__(self, config: "RunConfig", run_dir: "RunDir", plan: Plan, console: "Console") -> None:
        self.config = config
        self.run = run_dir
        self.plan = plan
        self.console = console
        self._sampler: Any = None

    # ----------------------------------------------------------------------------------------- components
    @property
    def sampler(self) -> Any:
        if self._sampler is None:
            from sami_toolkit.plugins.registry import get_component

            self._sampler = get_component("samplers", self.config.sampler.name,
                                          sampler_options(self.config, self.plan.templates),
                                          where="sampler.options")
        return self._sampler

    def _close_sampler(self) -> None:
        if self._sampler is not None:
            self._sampler.close()

    def model_for(self, t: int) -> str:
        """π_t as a model reference: the base for t = 0, else iteration t's checkpoint."""
        return self.plan.base_model if t == 0 else str(self.run.checkpoint_dir(t))

    def _progress(self) -> Any:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                        console=self.console, transient=False)

    # ------------------------------------------------------------------------------------------------ run
    def run_all(self) -> None:
        cfg = self.config
        if cfg.eval.at_iteration_zero and cfg.evaluators and not self.run.stage_done(0, "eval"):
            self.evaluate(0)
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
        self._close_sampler()
        self.run.finish()
        write_summary(self.run, cfg)
        from sami_toolkit.report.run_page import write_report

        write_report(self.run.root)

    # --------------------------------------------------------------------------------------------- sample
    def sample_items(self, t: int) -> list[dict]:
        """Every (query, constitution) to sample at iteration t, in a fixed order (spec §2.1 step 1)."""
        from sami_toolkit.text.constitutions import sample_constitutions
        from sami_toolkit.text.prompts import build_prompt, format_question

        cfg, plan = self.config, self.plan
        items = []
        for q in plan.halves[cfg.half_for(t)]:
            consts = sample_constitutions(plan.pset, cfg.constitutions.strategy, cfg.constitutions.n,
                                          _rng(cfg.seed, "constitutions", t, q.id), cfg.constitutions.names,
                                          cfg.constitutions.k)
            question = format_question(plan.templates, q.text)
            for j, c in enumerate(consts):
                rendered = c.render(plan.pset)  # generation prompt: file order (spec §2.8)
                items.append({"query_id": q.id, "index": j, "label": c.label(), "constitution": rendered,
                              "prompt": build_prompt(plan.templates.generation, constitution=rendered,
                                                     question=question)})
        return items

    def sample(self, t: int) -> None:
        from sami_toolkit.core.io import JsonlAppender, repair_jsonl

        path = self.run.samples_path(t)
        done = {(r["query_id"], r["index"]) for r in repair_jsonl(path)}
        items = self.sample_items(t)
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
                out.extend([{"query_id": it["query_id"], "index": it["index"], "label": it["label"],
                             "constitution": it["constitution"], "raw": text, "iteration": t, "pid": pid,
                             "time": round(time.time(), 3)} for it, text in zip(part, raw)])
                bar.advance(task, len(part))
                _maybe_kill(f"sample:{t}:{n}")
        self._close_sampler()
        self.run.mark_done(t, "sample", path, n=len(items))

    # ---------------------------------------------------------------------------------------------- pairs
    def make_pairs(self, t: int) -> None:
        from sami_toolkit.text.constitutions import shuffle_constitution
        from sami_toolkit.text.postprocess import filter_pair, postprocess_response
        from sami_toolkit.text.prompts import build_prompt, format_question
        from sami_toolkit.core.io import atomic_write_json, atomic_write_jsonl, repair_jsonl

        cfg, plan = self.config, self.plan
        by_query: dict[str, dict[int, dict]] = collections.defaultdict(dict)
        for r in repair_jsonl(self.run.samples_path(t)):
            by_query[r["query_id"]][r["index"]] = r
        options = cfg.filter_options()
        dropped: collections.Counter[str] = collections.Counter()
        pairs = []
        half = plan.halves[cfg.half_for(t)]
        for q in half:
            samples = by_query.get(q.id, {})
            if len(samples) != cfg.constitutions.n:
                raise ConfigError(f"{self.run.samples_path(t)}: query {q.id} has {len(samples)} of "
                                  f"{cfg.constitutions.n} responses; delete the file to resample")
            ordered = [samples[j] for j in range(cfg.constitutions.n)]
            responses = [postprocess_response(cfg.task, s["raw"], plan.templates) for s in ordered]
            reason = filter_pair(cfg.task, responses, options, plan.positive_index)
            if reason is not None:
                dropped[reason] += 1
                continue
            rng = _rng(cfg.seed, "train-shuffle", t, q.id)
            question = format_question(plan.templates, q.text)
            train_prompts = [build_prompt(plan.templates.training, constitution=shuffle_constitution(
                s["constitution"], rng), question=question) for s in ordered]  # spec §2.8
            pairs.append({"query_id": q.id, "query": q.text, "constitutions": [s["constitution"] for s in ordered],
                          "labels": [s["label"] for s in ordered], "train_prompts": train_prompts,
                          "responses": responses, "iteration": t})
        stats = {"queries": len(half), "kept": len(pairs), "dropped": sum(dropped.values()),
                 "dropped_by_reason": dict(sorted(dropped.items()))}
        atomic_write_json(self.run.iteration_dir(t) / "filter.json", stats)
        atomic_write_jsonl(self.run.pairs_path(t), pairs)
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())) or "none"
        self.console.print(f"iteration {t}: {len(pairs)} of {len(half)} queries kept; dropped {stats['dropped']} "
                           f"({reasons})")
        if not pairs:
            raise ConfigError(f"iteration {t}: every one of {len(half)} queries was filtered out ({reasons}); "
                              f"samples are kept in {self.run.samples_path(t)}",
                              hint="inspect the samples, then relax `filter` (spec §2.7) or raise "
                                   "sampler.options.max_new_tokens in a new run")
        if len(pairs) < cfg.batch_size:
            raise ConfigError(f"iteration {t}: only {len(pairs)} pairs survived filtering but one batch needs "
                              f"batch_size={cfg.batch_size} (dropped: {reasons}); samples and pairs are kept in "
                              f"{self.run.iteration_dir(t)}",
                              hint="lower batch_size, enlarge data.pool_size or relax `filter` in a new run")
        self.run.mark_done(t, "pairs", self.run.pairs_path(t), kept=len(pairs), dropped=dict(dropped))
        _maybe_kill(f"pairs:{t}")

    # ---------------------------------------------------------------------------------------------- train
    def train(self, t: int) -> None:
        from sami_toolkit.core.io import atomic_write_json, remove_tree
        from sami_toolkit.training.step import TrainRequest

        cfg = self.config
        self._close_sampler()
        out = self.run.checkpoint_dir(t)
        remove_tree(out)  # a checkpoint without a "done" mark is from a killed run: retrain (deterministic)
        for stale in out.parent.glob(f".{out.name}.*"):
            remove_tree(stale)
        trainer = build_trainer(cfg, self.console)
        steps = cfg.steps_for(t)
        with self._progress() as bar:
            task = bar.add_task(f"iteration {t}: training from base", total=steps, info="")

            def progress(step: int, metrics: dict) -> None:
                bar.update(task, completed=step, info=f"loss {metrics.get('loss', float('nan')):.4f}")
                _maybe_kill(f"train:{t}:{step}")

            result = trainer.train(TrainRequest(
                base_model=cfg.model, pairs_path=self.run.pairs_path(t), output_dir=out, steps=steps,
                batch_size=cfg.batch_size, seed=cfg.seed, settings=cfg.train, progress=progress,
                trust_remote_code=cfg.trust_remote_code))
        if not any((Path(result.checkpoint_dir) / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise InfrastructureError(f"trainer '{trainer.name}' reported {result.checkpoint_dir} but wrote no "
                                      "config.json (or LoRA adapter_config.json) there")
        from sami_toolkit.training.step import resolve_device, resolve_precision

        # the concrete precision (``auto`` depends on the machine), so two runs' numbers can be told apart; the
        # trainer says what it ran in, and a trainer that does not gets what the setting resolves to here
        precision = result.precision or resolve_precision(cfg.train, resolve_device(cfg.train.device))
        atomic_write_json(self.run.iteration_dir(t) / "train.json",
                          {"trainer": trainer.name, "steps": result.steps, "batch_size": cfg.batch_size,
                           "from": "base", "base_model": cfg.model, "precision": precision,
                           "metrics": result.metrics})
        self.run.mark_done(t, "train", Path(result.checkpoint_dir), steps=result.steps, trainer=trainer.name)
        _maybe_kill(f"checkpoint:{t}")

    # ----------------------------------------------------------------------------------------------- eval
    def evaluate(self, t: int) -> None:
        from sami_toolkit.evaluation.evaluators import EvalContext
        from sami_toolkit.core.io import atomic_write_json

        cfg, plan = self.config, self.plan
        judge = _get("judges", cfg.judge, "judge") if cfg.judge is not None else None
        eval_dir = self.run.eval_dir(t)
        eval_dir.mkdir(parents=True, exist_ok=True)
        metrics: dict[str, Any] = {"iteration": t, "steps": cfg.steps_for(t) if t else 0}
        for ref in cfg.evaluators:
            evaluator = _get("evaluators", ref, f"evaluators[{ref.name}]")
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
            filt = _read_json(self.run.iteration_dir(t) / "filter.json")
            train = _read_json(self.run.iteration_dir(t) / "train.json")
            metrics.update({"pairs_kept": filt.get("kept"), "pairs_dropped": filt.get("dropped"),
                            "dropped_by_reason": filt.get("dropped_by_reason", {})})
            if train.get("metrics"):
                metrics["train_loss_last"] = train["metrics"][-1].get("loss")
        atomic_write_json(self.run.metrics_path(t), metrics)
        self.run.mark_done(t, "eval", self.run.metrics_path(t))

    # ---------------------------------------------------------------------------------------------- report
    def print_iteration(self, t: int) -> None:
        self.console.print(summary_table(self.run, self.config, upto=t))


def _read_json(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------------ summaries
#: (column title, metric key) shown per iteration; missing keys are left blank
SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("MI col", "mi_infonce_constitutions"),
    ("held-out MI col", "heldout_mi_infonce_constitutions"),
    ("MI paper", "mi_paper"),
    ("MI 2-sided", "mi_infonce"),
    ("length", "mean_length_tokens"),
    ("win vs base", "win_rate_vs_base"),
)


def _fmt(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return ""
    sem = metrics.get(f"{key}_sem")
    if isinstance(value, float):
        return f"{value:.2f}±{sem:.2f}" if isinstance(sem, (int, float)) else f"{value:.2f}"
    return str(value)


def _columns(run: "RunDir", last: int) -> list[tuple[str, str]]:
    """The metric columns that have a value in at least one iteration (a run without a judge shows no win rate)."""
    all_metrics = [_read_json(run.metrics_path(t)) for t in range(0, last + 1)]
    return [(title, key) for title, key in SUMMARY_COLUMNS if any(key in m for m in all_metrics)]


def summary_rows(run: "RunDir", config: "RunConfig", upto: int | None = None) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)``: one row per iteration that has metrics or a filter record."""
    last = config.iterations if upto is None else upto
    columns = _columns(run, last)
    rows = []
    for t in range(0, last + 1):
        metrics = _read_json(run.metrics_path(t))
        filt = _read_json(run.iteration_dir(t) / "filter.json")
        if not metrics and not filt:
            continue
        kept = "" if t == 0 else f"{filt.get('kept', '')}/{filt.get('queries', '')}"
        reasons = ", ".join(f"{k} {v}" for k, v in (filt.get("dropped_by_reason") or {}).items())
        rows.append([str(t), str(config.steps_for(t) if t else 0), kept, reasons or "-",
                     *(_fmt(metrics, key) for _, key in columns)])
    return ["t", "steps", "kept", "dropped", *(title for title, _ in columns)], rows


def summary_table(run: "RunDir", config: "RunConfig", upto: int | None = None) -> Any:
    from rich.table import Table

    headers, rows = summary_rows(run, config, upto)
    table = Table(title=f"SAMI run {config.name}", title_justify="left")
    for title in headers:
        table.add_column(title, justify="left" if title == "dropped" else "right", no_wrap=title != "dropped",
                         min_width=len(title))
    for row in rows:
        table.add_row(*row)
    return table


def write_summary(run: "RunDir", config: "RunConfig") -> Path:
    """``summary.md``: what was run and the per-iteration metrics, readable without any tool."""
    from sami_toolkit.core.io import atomic_write_text

    headers, rows = summary_rows(run, config)
    # _read_json gives {} for an iteration not trained yet
    precisions = sorted({_read_json(run.iteration_dir(t) / "train.json").get("precision")
                         for t in range(1, config.iterations + 1)} - {None})
    precision = f", precision {'/'.join(precisions)}" if precisions else ""
    lines = [f"# SAMI run `{config.name}`", "",
             f"- base model: `{config.model}`; task `{config.task}`; principles `{config.principles}`",
             f"- constitutions: {config.constitutions.strategy}, C = {config.constitutions.n}; "
             f"trainer `{config.trainer.name}`, lr {config.train.lr:g}, {config.train.optimizer}, "
             f"batch {config.batch_size}, N_b {config.batches_per_iteration}{precision}",
             f"- iterations: {config.iterations}; training always restarts from the base weights (spec §2.1)", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")
    lines += ["", "kept = pairs kept / queries sampled (spec §2.7); MI col = log C − L_col with sum log-probs "
              "(a valid InfoNCE lower bound on I(Y;C|X), the headline number, spec §1.6); MI paper = the paper's "
              "estimator (not a bound); MI 2-sided = log C − L (the training loss's form); held-out MI col = MI col "
              "on fixed base-model responses under the all-positive and all-negative constitutions (evaluator "
              "`mi-heldout`: only the scorer changes, like a validation loss).",
              "Per-iteration files: `iterations/<t>/metrics.json`, `pairs.jsonl`, `samples.jsonl`, `eval/`."]
    return atomic_write_text(run.root / "summary.md", "\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------- entry
def _quiet_libraries() -> None:
    """transformers' per-load tqdm bars would interleave with the run's own rich progress."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _queries_hash(plan: Plan) -> str:
    """Hash of the ids and texts of every pool and held-out query (a resume must see the same data)."""
    import hashlib
    import json

    payload = [[[q.id, q.text] for q in half] for half in plan.halves] + [[[q.id, q.text] for q in plan.eval_queries]]
    return "sha256:" + hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def run_sami(config: "RunConfig", *, resume: bool = False, console: "Console | None" = None,
             run_dir: str | Path | None = None) -> Path:
    """Run or resume ``config`` in its run directory; returns the directory.

    A new run refuses an existing run directory (``--resume`` continues it); a resume refuses a config whose
    hash differs from the one recorded when the run started (exit 2)."""
    from sami_toolkit.core.consoles import console as make_console
    from sami_toolkit.run.store import RunDir

    console = console or make_console()
    _quiet_libraries()
    root = Path(run_dir) if run_dir is not None else config.resolved_run_dir()
    run = RunDir(root)
    config_hash = config.content_hash()
    if resume:
        recorded = run.manifest.get("config_hash")
        if recorded != config_hash:
            raise ConfigError(f"{root}: the run was started with a different configuration (hash "
                              f"{str(recorded)[:12]}…, now {config_hash[:12]}…); --resume continues a run "
                              "unchanged",
                              hint="start a new run with --run-dir DIR to use a changed config")
    elif run.exists():
        raise ConfigError(f"run directory {root} already holds a run", hint=f"continue it with `sami-kit run "
                          f"--resume {root}`, or choose another with --run-dir")
    plan = plan_run(config, console)
    for note in plan.notes:
        console.print(f"[yellow]note: {note}[/yellow]")
    data_hash = _queries_hash(plan)
    if resume:
        recorded_data = run.manifest.get("data", {}).get("queries_hash")
        if recorded_data not in (None, data_hash):
            raise ConfigError(f"{root}: the query data changed since the run started (the files behind "
                              "data.source / data.eval_source differ); --resume needs the same queries",
                              hint="restore the original data files, or start a new run")
        run.record_resume()
        console.print(f"resuming run in {root}")
    else:
        run.create(config=config.model_dump(mode="json"), config_hash=config_hash, seed=config.seed,
                   principles=plan.pset.model_dump(mode="json"))
        run.manifest["data"] = {"half_sizes": [len(h) for h in plan.halves],
                                "eval_queries": len(plan.eval_queries), "base_model_resolved": plan.base_model,
                                "queries_hash": data_hash}
        run.save_manifest()
        console.print(f"run directory: {root}")
    SamiLoop(config, run, plan, console).run_all()
    return root
