"""``sami-kit run``: the SAMI expert-iteration loop (spec §2.1), new or resumed.

Only click and the standard library are imported at module level; the loop, pydantic and rich load when the
command runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from sami_toolkit.cli.common import override_option


@click.command("run")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@override_option
@click.option("--preset", metavar="NAME",
              help="Start from a shipped preset: paper-hh, paper-tldr, paper-diverse or demo.")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Run directory (default runs/<name>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), metavar="RUN_DIR",
              help="Continue a killed or unfinished run from its directory; the config must be unchanged.")
def run(config: str | None, overrides: tuple[str, ...], preset: str | None, run_dir: str | None,
        resume_dir: str | None) -> None:
    """Run SAMI: sample, filter, train from the base weights, evaluate; repeat for N iterations.

    \b
    Examples:
      sami-kit run --preset demo
      sami-kit run my-run.yaml -o train.lr=1e-6 -o iterations=2
      sami-kit run --resume runs/my-run
    """
    from sami_toolkit.cli.common import stderr_console
    from sami_toolkit.cli.session import current_registry
    from sami_toolkit.core.errors import ConfigError
    from sami_toolkit.run.config import config_from_mapping, load_run_config
    from sami_toolkit.run.loop import run_sami

    console = stderr_console()
    registry = current_registry()
    if resume_dir is not None:
        if run_dir is not None and Path(run_dir) != Path(resume_dir):
            raise ConfigError("--run-dir and --resume name different directories; --resume RUN_DIR is enough")
        stored = Path(resume_dir) / "config.yaml"
        if not stored.is_file():
            raise ConfigError(f"--resume {resume_dir}: not a sami-kit run directory (no config.yaml)")
        if config is not None or preset is not None:
            # a config given with --resume must resolve to the recorded one (checked by hash in run_sami)
            cfg = load_run_config(config, overrides, preset=preset)
        else:
            from sami_toolkit.core.config import apply_overrides, load_yaml

            data = apply_overrides(load_yaml(stored) or {}, overrides)
            cfg = config_from_mapping(data, where=str(stored))
        root = Path(resume_dir)
    else:
        cfg = load_run_config(config, overrides, preset=preset)
        root = Path(run_dir) if run_dir is not None else cfg.resolved_run_dir()
    try:
        run_sami(cfg, resume=resume_dir is not None, console=console, run_dir=root, registry=registry)
    except KeyboardInterrupt:
        _interrupted(root)
    console.print(f"[green]done[/green]: {root}/summary.md")


def _interrupted(root: Path) -> None:
    """Ctrl-C: say exactly how to continue (the run directory keeps every finished stage and every sample
    written so far), and exit 130 like any program killed by SIGINT."""
    import shlex
    import sys

    from sami_toolkit.cli.session import current_session
    from sami_toolkit.core.run_dir import RunDir

    if not RunDir(root).exists():
        click.echo(f"Interrupted before the run started; nothing was written to {root}.", err=True)
        sys.exit(130)
    plugins_dir = current_session().plugins_dir
    command = ["sami-kit", *(["--plugins-dir", plugins_dir] if plugins_dir else []), "run", "--resume", str(root)]
    click.echo(f"Interrupted; the work written so far is kept in {root}. Continue the run with:\n"
               f"  {shlex.join(command)}", err=True)
    sys.exit(130)
