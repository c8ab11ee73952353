"""``sami-kit eval stats | compare | mi``: win-rate statistics, the CI gate, and mutual information.

Only click, the standard library and the (stdlib-only at import) bootstrap bound are imported here; everything
else is imported inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from sami_toolkit.cli.common import override_option, print_json
from sami_toolkit.evaluation.stats.win_rates import MAX_BOOTSTRAP  # stdlib-only at import: --help stays light


@click.group("eval")
def eval_group() -> None:
    """Evaluate checkpoints: win-rate statistics, gated comparisons, mutual information.

    \b
    Exit codes: 0 pass, 1 regression (gate failed), 2 usage/config error, 3 inconclusive,
    4 judge/infrastructure/budget error.
    """


# -------------------------------------------------------------------------------------------------- stats
@eval_group.command("stats")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--ties", type=click.Choice(["half", "loss", "drop"]), default=None,
              help="Tie policy of the raw win rate (spec §8.4b): 0.5, a loss, or dropped. Default: the file's "
                   "stats_settings (what eval compare used), else half.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--bootstrap", type=click.IntRange(min=0, max=MAX_BOOTSTRAP), default=None,
              help=f"Bootstrap replicates for the LC win-rate CI (0 = skip; at most {MAX_BOOTSTRAP}). Default: "
                   "the file's stats_settings, else 1000.")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=None,
              help="Seed of the bootstrap. Default: the file's stats_settings (eval compare's --seed), else 0.")
def stats_cmd(file: str, ties: str | None, as_json: bool, bootstrap: int | None, seed: int | None) -> None:
    """Win-rate statistics of a judgment JSONL FILE.

    Each line: {"outcome": 1|0|0.5|null, "len_test": int, "len_baseline": int}. null (or "failed": true) is a
    failed judgment: counted separately, never as a verdict or a tie. A file written by eval compare records
    the tie policy, bootstrap replicates and seed it used, so the numbers here are the same; flags override.
    """
    from sami_toolkit.evaluation.stats import compute_stats, judge_health, load_items, p_value_label

    items = load_items(file)
    settings = {"ties": "half", "bootstrap": 1000, "seed": 0, **items.settings}
    given = {"ties": ties, "bootstrap": bootstrap, "seed": seed}
    settings.update({k: v for k, v in given.items() if v is not None})
    result = compute_stats(items, **settings)
    # sami-kit's own judgment files record positions and per-order verdicts: add judge health for them
    health = judge_health(items) if any(p is not None for p in items.position) else None
    if as_json:
        print_json({**result.to_dict(), **({"judge_health": health} if health else {})})
        return
    from sami_toolkit.cli.common import stderr_console
    from sami_toolkit.report.ci import stats_table

    console = stderr_console()
    console.print(stats_table(result, f"{Path(file).name}: n={result.n} scored, {result.failures} failed "
                                      f"(W/T/L {result.wins}/{result.ties}/{result.losses})"))
    t = "n/a" if result.t is None else f"{result.t:.2f}"
    lt = "n/a" if result.logistic_t is None else f"{result.logistic_t:.2f}"
    console.print(f"raw: t={t}, p {p_value_label(result.p_value)}; logistic (fit SE): t={lt}, "
                  f"p {p_value_label(result.logistic_p_value)}")
    if result.logistic_paper_ci_low is not None:
        pt = "n/a" if result.logistic_paper_t is None else f"{result.logistic_paper_t:.2f}"
        console.print(f"logistic as the paper's Tables 2-3 report it (spec §8.5 on the fitted rate): 95% CI "
                      f"[{100 * result.logistic_paper_ci_low:.2f}, {100 * result.logistic_paper_ci_high:.2f}], "
                      f"t={pt}")
    if result.mean_len_test is not None:
        console.print(f"mean length: test {result.mean_len_test:.1f}, baseline {result.mean_len_baseline:.1f}")
    source = "the file's stats_settings" if items.settings else "defaults"
    console.print(f"settings: ties {result.tie_policy}, bootstrap {result.bootstrap}, seed {result.seed} "
                  f"({source}{' and flags' if any(v is not None for v in given.values()) else ''})")
    if health:
        from sami_toolkit.report.ci import health_rows

        console.print("judge health: " + "; ".join(f"{k} {v}" for k, v in health_rows(health)))
        for warning in health["warnings"]:
            console.print(f"warning: {warning}")
    for note in result.notes:
        console.print(f"note: {note}")


# ------------------------------------------------------------------------------------------------ compare
def _side(value: str | None, sampler: str | None, sampler_options: dict[str, Any]) -> dict[str, Any] | None:
    if value is None:
        return None
    if value.endswith(".jsonl"):
        return {"responses": value}
    side: dict[str, Any] = {"model": value}
    if sampler:
        side["sampler"] = {"name": sampler, "options": sampler_options}
    return side


def _kv(pairs: tuple[str, ...], what: str) -> dict[str, Any]:
    from sami_toolkit.core.config import apply_overrides

    return apply_overrides({}, pairs)  # `a=1` then `a.b=2` is a ConfigError, not a TypeError


def _config_file_data(config_path: str | None) -> dict[str, Any]:
    """The ``--config`` YAML as a mapping (empty without one); ``kind: eval`` is dropped."""
    from sami_toolkit.core.config import load_yaml
    from sami_toolkit.core.errors import ConfigError

    if not config_path:
        return {}
    loaded = load_yaml(config_path)
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{config_path}: the top level must be a mapping of keys to values")
    data = dict(loaded or {})
    if data.get("kind") == "eval":
        data.pop("kind")  # `kind: eval` marks the file for `sami-kit config validate`
    return data


def _judge_data(judge: Any, name: str | None, options: tuple[str, ...]) -> dict[str, Any]:
    """The config's ``judge`` with ``--judge`` and ``--judge-option`` applied on top."""
    out = dict(judge or {})
    if name:
        out["name"] = name
    out["options"] = {**dict(out.get("options") or {}), **_kv(options, "judge option")}
    return out


def _prompts_data(prompts_path: str | None, source: str | None, source_options: tuple[str, ...]) -> dict | None:
    """--prompts FILE or --source NAME [--source-option K=V] as the config's ``prompts:`` entry."""
    from sami_toolkit.core.errors import ConfigError

    if prompts_path and source:
        raise ConfigError("give --prompts or --source, not both")
    if prompts_path:
        return {"path": prompts_path}
    if source:
        return {"name": source, "options": _kv(source_options, "source option")}
    if source_options:
        raise ConfigError("--source-option needs --source NAME")
    return None


def _constitution_text(constitution: str | None) -> str | None:
    """--constitution TEXT, or @FILE read from a file."""
    if constitution is None or not constitution.startswith("@"):
        return constitution
    from sami_toolkit.core.errors import ConfigError
    from sami_toolkit.core.io import read_text

    cpath = Path(constitution[1:])
    if not cpath.is_file():
        raise ConfigError(f"--constitution {constitution}: no such file")
    return read_text(cpath)


#: flags copied as they are into the config's top-level keys
_SIMPLE_FLAGS = ("task", "principles", "seed", "both_orders", "metric", "margin", "ties", "bootstrap",
                 "length_tokenizer", "max_cost", "min_items", "max_failure_rate", "probe")
#: flags that fill the config's ``output:`` entry
_OUTPUT_FLAGS = {"out_dir": "dir", "judgments": "judgments", "junit": "junit", "markdown": "markdown",
                 "html": "html"}


def _compare_data(config_path: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The eval config as a mapping: the --config file's, with every command-line flag given put over it."""
    data = _config_file_data(config_path)
    s_opts = _kv(flags["sampler_options"], "sampler option")
    for key in ("candidate", "baseline"):
        value = _side(flags[key], flags["sampler"], s_opts)
        if value is not None:
            data[key] = value
    prompts = _prompts_data(flags["prompts_path"], flags["source"], flags["source_options"])
    if prompts is not None:
        data["prompts"] = prompts
    if flags["judge_name"] or flags["judge_options"]:
        data["judge"] = _judge_data(data.get("judge"), flags["judge_name"], flags["judge_options"])
    simple = {key: flags[key] for key in _SIMPLE_FLAGS}
    simple["constitution"] = _constitution_text(flags["constitution"])
    data.update({k: v for k, v in simple.items() if v is not None})
    if flags["sequential"] or flags["sequential_round"] is not None:
        data["sequential"] = {**dict(data.get("sequential") or {}),
                              **({"enabled": True} if flags["sequential"] else {}),
                              **({"round": flags["sequential_round"]} if flags["sequential_round"] is not None
                                 else {})}
    if flags["calibrate"] is not None:
        data["calibration"] = {**dict(data.get("calibration") or {}), "path": flags["calibrate"]}
    if flags["per_principle"]:
        data["per_principle"] = True
    if flags["all_principles"]:
        data["principle_gate"] = "all"
    output = dict(data.get("output") or {})
    output.update({key: flags[flag] for flag, key in _OUTPUT_FLAGS.items() if flags[flag] is not None})
    if output:
        data["output"] = output
    return data


@eval_group.command("compare")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="EvalConfig YAML file.")
@override_option(help="Override an eval-config value (`sami-kit config schema --kind eval`), e.g. -o margin=0.05 "
                      "-o judge.options.model=gpt-4o -o candidate.sampler.options.max_new_tokens=200.")
@click.option("--candidate", help="Candidate model reference, or a responses .jsonl file.")
@click.option("--baseline", help="Baseline model reference, or a responses .jsonl file.")
@click.option("--prompts", "prompts_path", type=click.Path(dir_okay=False), help='Prompts JSONL {"id","prompt"}.')
@click.option("--source", help="Query source name instead of --prompts (see `sami-kit query-sources list`).")
@click.option("--source-option", "source_options", multiple=True, metavar="KEY=VALUE",
              help="Query source option, repeatable (e.g. --source-option split=test).")
@click.option("--task", help="Templates: tldr, hh-rlhf or generic.")
@click.option("--principles", help="Principle set name or YAML path (all-positive constitution).")
@click.option("--constitution", help="Explicit constitution text, or @FILE to read it from a file.")
@click.option("--judge", "judge_name", help="Judge name (e.g. litellm).")
@click.option("--judge-option", "judge_options", multiple=True, metavar="KEY=VALUE",
              help="Judge option, repeatable (e.g. --judge-option model=gpt-4o).")
@click.option("--sampler", help="Sampler for model sides (default hf).")
@click.option("--sampler-option", "sampler_options", multiple=True, metavar="KEY=VALUE", help="Sampler option.")
@click.option("--seed", type=int, help="Seed for judge positions and principle shuffles (default 1).")
@click.option("--both-orders/--one-order", default=None, help="Judge each pair in both orders.")
@click.option("--metric", type=click.Choice(["win_rate", "lc_win_rate", "balanced_win_rate", "sc_win_rate"]),
              help="Metric the gate decides on (default win_rate; sc_win_rate = style-controlled).")
@click.option("--sequential", "sequential", is_flag=True, default=None,
              help="Judge in rounds and stop once the verdict is decided (group-sequential; metric win_rate).")
@click.option("--sequential-round", type=click.FloatRange(0, 1, min_open=True),
              help="Share of the prompt set per round of --sequential (default 0.05).")
@click.option("--calibrate", "calibrate", metavar="FILE",
              help="Judge-validity preflight on labelled pairs (JSONL, or 'builtin'); exit 4 below the floors.")
@click.option("--probe", type=click.IntRange(min=0),
              help="Re-judge N real items with the positions swapped: position-flip rate in judge health.")
@click.option("--per-principle", "per_principle", is_flag=True, default=None,
              help="Also judge each principle separately: per-principle win rates with CIs.")
@click.option("--require-all-principles", "all_principles", is_flag=True, default=None,
              help="With --per-principle: every principle must pass too (Holm-corrected).")
@click.option("--margin", type=float, help="Non-inferiority margin as a fraction (e.g. 0.05).")
@click.option("--min-items", type=click.IntRange(min=1),
              help="Fewest scored items the gate decides on; fewer is inconclusive (default 20).")
@click.option("--max-failure-rate", type=click.FloatRange(0, 1),
              help="Largest fraction of failed judgments tolerated; above it exit 4 (default 0.2).")
@click.option("--ties", type=click.Choice(["half", "loss", "drop"]), help="Tie policy (default half).")
@click.option("--bootstrap", type=click.IntRange(min=0, max=MAX_BOOTSTRAP),
              help=f"Bootstrap replicates, 0..{MAX_BOOTSTRAP} (default 1000).")
@click.option("--length-tokenizer", help="Model reference whose tokenizer counts response lengths.")
@click.option("--max-cost", type=float, help="Judge budget in USD (exit 4 when it would be crossed).")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Directory for judgments, responses, summary.")
@click.option("--judgments", type=click.Path(dir_okay=False), help="Per-item judgments JSONL.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON summary on stdout.")
@click.option("--junit", type=click.Path(dir_okay=False), help="Write JUnit XML (one testcase: the gate).")
@click.option("--markdown", type=click.Path(dir_okay=False), help="Write a Markdown summary.")
@click.option("--html", type=click.Path(dir_okay=False), help="Write a self-contained HTML page.")
def compare_cmd(config_path: str | None, overrides: tuple[str, ...], as_json: bool, **flags: Any) -> None:
    """Judge a candidate against a baseline and gate: exit 0 pass, 1 regression, 3 inconclusive, 4 error.

    \b
    Gate on --metric with --margin M: pass if the 95% CI lower bound > 0.5 - M,
    regression if the upper bound < 0.5 - M, otherwise inconclusive; also
    inconclusive below --min-items scored items or on a zero-width CI, and
    exit 4 when more than --max-failure-rate of the judgments failed.
    """
    from sami_toolkit.evaluation.compare import run_compare
    from sami_toolkit.report.ci import clean_summary, print_summary, write_outputs
    from sami_toolkit.core.config import apply_overrides, validate_model
    from sami_toolkit.core.errors import ConfigError
    from sami_toolkit.evaluation.config import EvalConfig
    from sami_toolkit.cli.common import exit_with, stderr_console

    data = _compare_data(config_path, flags)
    data = apply_overrides(data, overrides)
    if "judge" not in data:
        raise ConfigError("no judge: give --judge NAME (e.g. --judge litellm --judge-option model=gpt-4o) "
                          "or `judge:` in --config")
    config = validate_model(EvalConfig, data, file=config_path)
    from sami_toolkit.cli.session import current_registry
    from sami_toolkit.run.preflight import preflight

    preflight(config, current_registry(), file=config_path)  # every name, option and file, before any generation
    result = run_compare(config, registry=current_registry())
    console = stderr_console()
    written = write_outputs(result, config)
    print_summary(result, console)
    for path in written:
        console.print(f"wrote {path}")
    if config.report_to:  # the summary, gate verdict and judge health to the trackers; never changes the exit code
        from rich.markup import escape

        from sami_toolkit.tracking.compare import log_compare

        log_compare(config, result, current_registry(), written=written,
                    report=lambda line: console.print(f"[yellow]warning: {escape(line)}[/yellow]", highlight=False))
    if as_json:
        print_json(clean_summary(result))
    sys.stdout.flush()
    exit_with(result.gate.exit_code)


# ---------------------------------------------------------------------------------------------------- mi
@eval_group.command("mi")
@click.argument("checkpoint")
@click.option("--principles", required=True, help="Principle set name or YAML path.")
@click.option("--prompts", "prompts_path", type=click.Path(dir_okay=False), help='Prompts JSONL {"id","prompt"}.')
@click.option("--source", help="Query source name instead of --prompts.")
@click.option("--source-option", "source_options", multiple=True, metavar="KEY=VALUE",
              help="Query source option, repeatable (e.g. --source-option split=test).")
@click.option("--task", help="Templates: tldr, hh-rlhf or generic (default: the principle set's task).")
@click.option("--sampler", default="hf", show_default=True, help="Sampler that generates the responses.")
@click.option("--sampler-option", "sampler_options", multiple=True, metavar="KEY=VALUE", help="Sampler option.")
@override_option(help="Set an option of the 'mi' evaluator (`sami-kit evaluators show mi`), e.g. -o batch_size=4 "
                      "-o principle_names=[concise,comprehensive].")
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N prompts.")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=1, show_default=True,
              help="Seed of the principle-order shuffles.")
@click.option("--out-dir", type=click.Path(file_okay=False), default="mi-eval", show_default=True,
              help="Directory for mi.jsonl (per-query estimates, scores and responses).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on stdout.")
def mi_cmd(checkpoint: str, principles: str, prompts_path: str | None, source: str | None,
           source_options: tuple[str, ...], task: str | None, sampler: str,
           sampler_options: tuple[str, ...], overrides: tuple[str, ...], limit: int | None, seed: int, out_dir: str,
           as_json: bool) -> None:
    """Mutual information between responses and constitutions for CHECKPOINT (spec §1.6).

    -o sets options of the 'mi' evaluator, e.g. -o batch_size=4 -o dtype=bfloat16 -o principle_names=[a,b].
    """
    from sami_toolkit.evaluation.compare import load_prompts_file
    from sami_toolkit.core.config import apply_overrides
    from sami_toolkit.core.errors import ConfigError
    from sami_toolkit.evaluation.context import EvalContext
    from sami_toolkit.text.principles import load_principle_set
    from sami_toolkit.cli.session import current_registry
    from sami_toolkit.cli.common import stderr_console

    registry = current_registry()
    if bool(prompts_path) == bool(source):
        raise ConfigError("give exactly one of --prompts FILE.jsonl or --source NAME")
    from sami_toolkit.run.preflight import check_mi_inputs

    check_mi_inputs(registry, checkpoint=checkpoint, principles=principles, prompts_path=prompts_path, source=source,
                    source_options=_kv(source_options, "source option"), task=task, sampler=sampler,
                    sampler_options=_kv(sampler_options, "sampler option"),
                    evaluator_options=apply_overrides({}, overrides)).raise_for_problems()
    if prompts_path:
        queries = load_prompts_file(Path(prompts_path))
    else:
        queries = list(registry.create("query-sources", source, _kv(source_options, "source option"),
                                       where="--source-option").load())
    if limit:
        queries = queries[:limit]
    if not queries:
        raise ConfigError("no prompts to evaluate")
    pset = load_principle_set(principles)
    if task is None:  # the set says what it is for (tldr-mistral: `task: tldr`); a free-form task gets generic
        from sami_toolkit.text.prompts import normalize_task

        try:
            task = normalize_task(pset.task)
        except ConfigError:
            task = "generic"
            stderr_console().print(f"note: principle set '{pset.name}' is for task '{pset.task}', which has no "
                                   "built-in templates; using 'generic' (choose with --task)", markup=False,
                                   highlight=False)
    evaluator = registry.create("evaluators", "mi", apply_overrides({}, overrides), where="mi options")
    sampler_obj = registry.create("samplers", sampler, _kv(sampler_options, "sampler option"),
                                  where="--sampler-option")
    context = EvalContext(model=checkpoint, base_model=None, queries=queries, principle_set=pset, templates=None,
                          task=task, sampler=sampler_obj, judge=None, out_dir=Path(out_dir), seed=seed)
    metrics = evaluator.evaluate(context)
    if as_json:
        print_json(metrics)
        return
    from rich.table import Table

    from sami_toolkit.core.metrics import metric

    table = Table(title=f"MI of {checkpoint}: {metrics['mi_n_queries']} queries x "
                        f"{metrics['mi_n_constitutions']} constitutions (± SEM)")
    table.add_column("estimator")
    table.add_column("value")
    for key in ("mi_infonce_constitutions", "mi_infonce", "mi_infonce_responses", "mi_paper", "mean_length_tokens"):
        v, s = metrics.get(key), metrics.get(f"{key}_sem")
        table.add_row(metric(key).heading, "n/a" if v is None else f"{v:.3f} ± {s or 0:.3f}")
    console = stderr_console()
    console.print(table)
    if metrics.get("mi_note"):
        console.print(f"note: {metrics['mi_note']}")
    console.print(f"wrote {metrics['mi_file']}")


# ------------------------------------------------------------------------------------------------ history
from sami_toolkit.cli.history_cmd import history_cmd  # noqa: E402 - click only at import: --help stays light

eval_group.add_command(history_cmd)
