"""Preflight: everything a config names, checked in seconds before any model loads.

Why this exists: a run resolves its trainer at the train stage, its judge and evaluators at the eval stage and
its sampler when it first samples, so a misspelt ``trainer.name`` used to surface only after the iteration-0
evaluation and an hour of sampling, and ``sami-kit config validate`` said OK to configs that ``run`` rejects.  The
preflight resolves every component the config names (unknown name -> "did you mean", unknown option -> the field
and ``sami-kit <kind> show NAME``) and checks every file and count it can check offline: the principle set and its
antitheses, the constitution count C against what the principles allow, local model paths, query files and the
pool split.  It is the one check shared by ``sami-kit config validate`` and the start of ``sami-kit run``, ``eval
compare`` and ``eval mi``; it builds components only to validate their options (constructors load nothing) and
never imports torch.

Problems are collected, not raised one by one, so a config with three mistakes gets three lines
(``FILE:LINE: field.path: problem``) and exit 2 (:class:`~sami_toolkit.core.errors.ConfigError`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from sami_toolkit.core.errors import ConfigError, UnknownComponentError

if TYPE_CHECKING:  # pragma: no cover
    from sami_toolkit.core.records import Query
    from sami_toolkit.evaluation.config import EvalConfig, SideConfig
    from sami_toolkit.plugins.registry import Registry
    from sami_toolkit.run.config import RunConfig
    from sami_toolkit.text.principles import PrincipleSet

Loc = tuple[Any, ...]


@dataclass(frozen=True)
class Problem:
    """One thing the config gets wrong: where (a field path such as ``("sampler", "options", "top")``) and what."""

    loc: Loc
    message: str
    hint: str | None = None

    @property
    def field(self) -> str:
        return ".".join(str(part) for part in self.loc) or "(top level)"


def _loc(dotted: str) -> Loc:
    return tuple(int(part) if part.isdigit() else part for part in dotted.split("."))


def _line(file: str | Path | None, top_keys: set[str], loc: Loc) -> int | None:
    """The line of ``loc`` in the user's file, only when its top-level key is written there (a value that came from
    a preset or an ``-o`` override has no line in the file)."""
    if file is None or not loc or str(loc[0]) not in top_keys:
        return None
    from sami_toolkit.core.config import yaml_line_of

    return yaml_line_of(file, loc)


@dataclass
class Preflight:
    """The problems and notes found while checking one config against one registry."""

    registry: "Registry"
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------------------------------- collecting
    def problem(self, loc: Loc, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(tuple(loc), message, hint))

    def attempt(self, loc: Loc, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, or None with its ConfigError (or pydantic ValidationError) recorded at ``loc``."""
        from pydantic import ValidationError

        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            from sami_toolkit.core.config import format_validation_error

            self._add_lines(format_validation_error(exc, prefix=".".join(map(str, loc))), loc, None)
        except ConfigError as exc:
            self.problem(loc, exc.message, exc.hint)
        return None

    def _add_lines(self, text: str, loc: Loc, hint: str | None) -> None:
        """``field.path: problem`` lines (pydantic errors as :func:`format_validation_error` prints them)."""
        for line in text.splitlines():
            dotted, sep, message = line.partition(": ")
            if sep and " " not in dotted:
                self.problem(_loc(dotted), message, hint)
            else:
                self.problem(loc, line, hint)

    def component(self, kind: str, name: str, options: Mapping[str, Any] | None, name_loc: Loc,
                  options_loc: Loc) -> Any:
        """Resolve ``name`` of ``kind`` and validate its options; the instance, or None with the problems noted."""
        try:
            cls = self.registry.get(kind, name)
        except UnknownComponentError as exc:
            self.problem(name_loc, exc.message, exc.hint)
            return None
        where = ".".join(map(str, options_loc))
        try:
            return cls.from_options(options, where=where)
        except ConfigError as exc:
            head, _, body = exc.message.partition("\n")
            if head.startswith("invalid options for") and body:
                before = len(self.problems)
                self._add_lines(body, options_loc, exc.hint)
                # an unknown-key line already names `sami-kit <kind> show NAME`: no hint repeating it
                self.problems[before:] = [Problem(p.loc, p.message) if f"sami-kit {kind} show" in p.message else p
                                          for p in self.problems[before:]]
            else:  # raised by the component itself (a constructor that checks more than its Options)
                self.problem(options_loc, exc.message, exc.hint)
        return None

    # ---------------------------------------------------------------------------------------------- result
    def lines(self, file: str | Path | None = None) -> list[str]:
        """``FILE:LINE: field: problem`` per problem, in file order when a file is given, then each hint once."""
        top_keys: set[str] = set()
        if file is not None:
            from sami_toolkit.core.config import load_yaml

            try:
                data = load_yaml(file)
            except ConfigError:  # the file validated a moment ago; without it, lines are just left out
                data = None
            top_keys = {str(k) for k in data} if isinstance(data, dict) else set()
        rows = []
        for p in self.problems:
            line = _line(file, top_keys, p.loc)
            where = "" if file is None else (f"{file}:{line}: " if line else f"{file}: ")
            rows.append((line is None, line or 0, f"{where}{p.field}: {p.message}"))
        hints = list(dict.fromkeys(p.hint for p in self.problems if p.hint))
        # file order, then what is not written in the file (presets, -o overrides), then each hint once
        return [row[2] for row in sorted(rows, key=lambda r: r[:2])] + [f"  hint: {h}" for h in hints]

    def raise_for_problems(self, file: str | Path | None = None) -> list[str]:
        """Raise one ConfigError (exit 2) listing every problem; without problems return the notes."""
        if self.problems:
            raise ConfigError("\n".join(self.lines(file)))
        return self.notes

    # --------------------------------------------------------------------------------------------- shared
    def model(self, ref: str | None, loc: Loc) -> None:
        """A model reference: the embedded wheel, a ``.gguf`` file or a local directory must exist; anything else
        is a hub id, which cannot be checked offline (the model loader reports it later)."""
        if ref is None:
            return
        from sami_toolkit.models.loading import EMBEDDED_MODELS, embedded_gguf_path, resolve_model

        text = str(ref)
        if text in EMBEDDED_MODELS:
            self.attempt(loc, embedded_gguf_path, text)
            return
        path = Path(text).expanduser()
        if text.endswith(".gguf"):  # resolve_model would convert it; only its existence is checked here
            if not path.is_file():
                self.problem(loc, f"model file {path} does not exist")
            return
        resolved = self.attempt(loc, resolve_model, text)  # local paths only: no download, no conversion
        if resolved == text and not path.exists():
            self.notes.append(f"{'.'.join(map(str, loc))}: '{text}' is not a local path, so it is taken as a "
                              "Hugging Face hub id; hub ids are not checked before the run")

    def principle_set(self, name: str, loc: Loc, *, antitheses: bool = True) -> "PrincipleSet | None":
        """The principle set; with ``antitheses``, every principle usable in a contrast: a non-empty antithesis
        different from its definition (every pair strategy and the MI constitutions contrast the two, spec
        §5.2–§5.3; a judge's constitution uses only the definitions, spec §8.2)."""
        from sami_toolkit.text.principles import load_principle_set

        pset = self.attempt(loc, load_principle_set, name)
        if pset is None or not antitheses:
            return pset
        for p in pset.principles:
            if not p.antithesis.strip():
                self.problem(loc, f"principle set '{pset.name}': principle '{p.name}' has an empty antithesis; "
                                  "constitutions contrast each definition with its antithesis (spec §5.2)")
            elif p.antithesis.strip() == p.definition.strip():
                self.problem(loc, f"principle set '{pset.name}': principle '{p.name}' has the same text as "
                                  "definition and antithesis, so its constitutions cannot be told apart (spec §5.2)")
        return pset

    def principle_names(self, pset: "PrincipleSet | None", names: Sequence[str] | None, loc: Loc) -> None:
        if pset is not None:
            for name in names or ():
                self.attempt(loc, pset.get, name)

    def query_source(self, ref: Any, loc: Loc) -> "list[Query] | None":
        """Resolve a query source; a local file source (jsonl, csv) is read, so missing files, fields and
        duplicate ids show now and its queries can be counted.  Hub sources are not loaded (network);
        their ``data_files`` must exist."""
        from sami_toolkit.text.query_sources import CsvSource, JsonlSource

        source = self.component("query-sources", ref.name, ref.options, (*loc, "name"), (*loc, "options"))
        if source is None:
            return None
        if isinstance(source, (JsonlSource, CsvSource)):
            return self.attempt((*loc, "options"), source.load)
        data_files = getattr(source.options, "data_files", None)
        if isinstance(data_files, str) and data_files and not Path(data_files).expanduser().exists():
            self.problem((*loc, "options", "data_files"), f"{data_files} does not exist")
        return None

    def templates(self, task: str, overrides: Mapping[str, Any] | None, loc: Loc) -> Any:
        from sami_toolkit.text.prompts import get_templates

        return self.attempt(loc, get_templates, task, overrides)

    def evaluator_principles(self, evaluator: Any, pset: "PrincipleSet | None", loc: Loc) -> None:
        """An evaluator's ``principle_names`` must be in the set; an MI evaluator enumerates all 2^k
        constitutions of its principles, so their number is checked too (spec §1.6)."""
        from sami_toolkit.evaluation.mi import MIProtocolOptions
        from sami_toolkit.text.constitutions import all_constitutions

        names = getattr(evaluator.options, "principle_names", None)
        if pset is None:
            return
        if isinstance(evaluator.options, MIProtocolOptions):
            self.attempt((*loc, "principle_names"), all_constitutions, pset, names)
        else:
            self.principle_names(pset, names, (*loc, "principle_names"))


# ------------------------------------------------------------------------------------------------------ run
def _constitutions(check: Preflight, config: "RunConfig", pset: "PrincipleSet") -> None:
    """Strategy, names and k first (C = 2 always fits), then C itself against what those principles allow."""
    from sami_toolkit.text.constitutions import sample_constitutions

    cc = config.constitutions
    if check.attempt(("constitutions",), sample_constitutions, pset, cc.strategy, 2, random.Random(0), cc.names,
                     cc.k) is not None and cc.n > 2:
        check.attempt(("constitutions", "n"), sample_constitutions, pset, cc.strategy, cc.n, random.Random(0),
                      cc.names, cc.k)


def _run_data(check: Preflight, config: "RunConfig") -> None:
    """The query sources, and for local files the counts: held-out split and pool halves (spec §2.5–§2.6, §8.1)."""
    from sami_toolkit.run.plan import pool_halves, split_pool_and_eval

    queries = check.query_source(config.data.source, ("data", "source"))
    eval_queries = None
    if config.data.eval_source is not None:
        eval_queries = check.query_source(config.data.eval_source, ("data", "eval_source")) or []
    if queries is None:
        return
    split = check.attempt(("eval", "size"), split_pool_and_eval, config, queries, eval_queries)
    if split is None:
        return
    halves = check.attempt(("data", "pool_size"), pool_halves, config, split[0], check.notes)
    if halves and len(halves[0]) < config.batch_size:
        check.notes.append(f"warning: batch_size={config.batch_size} but a pool half has {len(halves[0])} "
                           "queries: no iteration can fill one batch, so the run would stop after sampling; "
                           "lower batch_size or enlarge data.pool_size")


def _run_components(check: Preflight, config: "RunConfig", templates: Any, pset: "PrincipleSet | None") -> None:
    from sami_toolkit.run.plan import sampler_options

    sampler_opts = dict(config.sampler.options)
    if templates is not None and config.sampler.name in check.registry.names("samplers"):
        sampler_opts = sampler_options(config, templates, registry=check.registry)  # what the loop passes
    check.component("samplers", config.sampler.name, sampler_opts, ("sampler", "name"), ("sampler", "options"))
    if config.trainer.name == "deepspeed" and "deepspeed" not in check.registry.names("trainers"):
        check.notes.append("trainer 'deepspeed' is not installed (pip install -e plugins/sami-kit-deepspeed); "
                           "the run falls back to the built-in 'torch' trainer")
    else:
        check.component("trainers", config.trainer.name, config.trainer.options, ("trainer", "name"),
                        ("trainer", "options"))
    check.component("losses", config.train.loss, config.train.loss_options, ("train", "loss"),
                    ("train", "loss_options"))
    if config.judge is not None:
        check.component("judges", config.judge.name, config.judge.options, ("judge", "name"), ("judge", "options"))
    for i, ref in enumerate(config.evaluators):
        loc = ("evaluators", i)
        evaluator = check.component("evaluators", ref.name, ref.options, (*loc, "name"), (*loc, "options"))
        if evaluator is None:
            continue
        if evaluator.needs_judge and config.judge is None:
            check.problem((*loc, "name"), f"evaluator '{ref.name}' needs a judge, and the config has no `judge:`",
                          hint="add e.g. `judge: {name: litellm, options: {model: gpt-4o}}`, or drop the evaluator")
        check.evaluator_principles(evaluator, pset, (*loc, "options"))


def _trackers(check: Preflight, refs: Sequence[Any]) -> None:
    """Each ``report_to`` tracker: its name and options, and its library installed (else the pip command, exit 2):
    a missing ``wandb`` must stop the run now, not after sampling (docs/tracking.md)."""
    from sami_toolkit.tracking import missing_library

    for i, ref in enumerate(refs):
        tracker = check.component("trackers", ref.name, ref.options, ("report_to", i, "name"),
                                  ("report_to", i, "options"))
        problem = missing_library(tracker) if tracker is not None else None
        if problem is not None:
            check.problem(("report_to", i, "name"), problem[0], hint=problem[1])


def check_run_config(config: "RunConfig", registry: "Registry") -> Preflight:
    """Every check a run config allows before any model loads (see the module docstring)."""
    check = Preflight(registry)
    check.model(config.model, ("model",))
    check.model(config.eval.baseline_model, ("eval", "baseline_model"))
    pset = check.principle_set(config.principles, ("principles",))
    if pset is not None:
        _constitutions(check, config, pset)
    templates = check.templates(config.task, config.templates, ("templates",))
    check.attempt(("filter",), config.filter_options)
    _run_data(check, config)
    _run_components(check, config, templates, pset)
    _trackers(check, config.report_to)
    return check


# ----------------------------------------------------------------------------------------------------- eval
def _side(check: Preflight, side: "SideConfig", label: str) -> None:
    from sami_toolkit.evaluation.compare import load_responses_file

    if side.responses is not None:  # read now: a bad file must not surface after the other side was generated
        check.attempt((label, "responses"), load_responses_file, Path(side.responses))
        return
    check.model(side.model, (label, "model"))
    check.component("samplers", side.sampler.name, side.sampler.options, (label, "sampler", "name"),
                    (label, "sampler", "options"))


def check_eval_config(config: "EvalConfig", registry: "Registry") -> Preflight:
    """Every check an ``eval compare`` config allows before any model loads or any judge call."""
    from sami_toolkit.evaluation.compare import load_prompts_file
    from sami_toolkit.sampling.generation import positive_constitution

    check = Preflight(registry)
    judge_options = dict(config.judge.options)
    if config.max_cost is not None and config.judge.name in registry.names("judges"):
        if "max_cost" not in registry.get("judges", config.judge.name).Options.model_fields:
            check.problem(("max_cost",), f"judge '{config.judge.name}' has no max_cost option, so --max-cost "
                                         "cannot be enforced", hint="use a judge with a budget (e.g. litellm)")
        else:
            judge_options["max_cost"] = config.max_cost
    check.component("judges", config.judge.name, judge_options, ("judge", "name"), ("judge", "options"))
    _side(check, config.candidate, "candidate")
    _side(check, config.baseline, "baseline")
    if config.prompts is not None and config.prompts.path is not None:
        check.attempt(("prompts", "path"), load_prompts_file, Path(config.prompts.path))
    elif config.prompts is not None:
        check.query_source(config.prompts, ("prompts",))
    check.templates(config.task, None, ("task",))
    check.model(config.length_tokenizer, ("length_tokenizer",))
    if config.constitution is not None:
        if not config.constitution.strip():
            check.problem(("constitution",), "the text is empty")
    else:
        pset = check.principle_set(str(config.principles), ("principles",), antitheses=False)
        if pset is not None:
            check.attempt(("principle_names",), positive_constitution, pset, config.principle_names)
    _trackers(check, config.report_to)
    return check


def check_mi_inputs(registry: "Registry", *, checkpoint: str, principles: str, prompts_path: str | None,
                    source: str | None, source_options: Mapping[str, Any], task: str | None, sampler: str,
                    sampler_options: Mapping[str, Any], evaluator_options: Mapping[str, Any]) -> Preflight:
    """``sami-kit eval mi``'s arguments, checked like a config (locations are the command's options); ``task``
    None means the principle set's own, which the command resolves."""
    from types import SimpleNamespace

    from sami_toolkit.evaluation.compare import load_prompts_file

    check = Preflight(registry)
    check.model(checkpoint, ("CHECKPOINT",))
    pset = check.principle_set(principles, ("--principles",))
    if prompts_path:
        check.attempt(("--prompts",), load_prompts_file, Path(prompts_path))
    elif source:
        check.query_source(SimpleNamespace(name=source, options=dict(source_options)), ("--source",))
    if task is not None:
        check.templates(task, None, ("--task",))
    check.component("samplers", sampler, sampler_options, ("--sampler",), ("--sampler-option",))
    evaluator = check.component("evaluators", "mi", evaluator_options, ("mi",), ("-o",))
    if evaluator is not None:
        check.evaluator_principles(evaluator, pset, ("-o",))
    return check


# ------------------------------------------------------------------------------------------------ entry
def preflight(config: Any, registry: "Registry", *, file: str | Path | None = None) -> list[str]:
    """Check a validated run or eval config; raise one ConfigError (exit 2) listing every problem, with
    ``FILE:LINE:`` where the field is written in ``file``; return the notes.  Other config types pass unchecked."""
    from sami_toolkit.evaluation.config import EvalConfig
    from sami_toolkit.run.config import RunConfig

    if isinstance(config, RunConfig):
        return check_run_config(config, registry).raise_for_problems(file)
    if isinstance(config, EvalConfig):
        return check_eval_config(config, registry).raise_for_problems(file)
    return []
