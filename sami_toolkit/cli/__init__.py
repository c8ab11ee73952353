"""The ``sami-kit`` command line.

Subcommands live in their own modules and are imported only when used (``LazyGroup``), so ``sami-kit --help``
imports click and pluggy but never torch, transformers, deepspeed, vllm, litellm, pydantic or rich.
Every :class:`~sami_toolkit.core.errors.SamiKitError` becomes one ``Error: ...`` line on stderr and its exit code.
"""

from __future__ import annotations

import importlib
import sys

import click

from sami_toolkit import __version__
from sami_toolkit.core.errors import SamiKitError
from sami_toolkit.core.hookspecs import COMPONENT_HOOKS

#: command name -> "module:attribute" (a click command, or a factory called with the command name)
LAZY_COMMANDS: dict[str, str] = {
    "run": "sami_toolkit.cli.run_cmd:run",
    "eval": "sami_toolkit.cli.eval_cmd:eval_group",
    "report": "sami_toolkit.cli.report_cmd:report",
    "principles": "sami_toolkit.cli.principles_cmd:principles",
    "config": "sami_toolkit.cli.config_cmd:config",
    "plugins": "sami_toolkit.cli.plugins_cmd:plugins",
    **{kind: "sami_toolkit.cli.components_cmd:kind_group" for kind in COMPONENT_HOOKS.values()},
}


class LazyGroup(click.Group):
    """A group whose built-in subcommands are imported on demand and whose plugin commands come from the
    ``register_commands`` hook."""

    _plugin_commands_loaded = False

    def _load_plugin_commands(self) -> None:
        if self._plugin_commands_loaded:
            return
        self._plugin_commands_loaded = True
        from sami_toolkit.plugins.loading import get_plugin_manager

        try:
            get_plugin_manager().hook.register_commands(cli=self)
        except SamiKitError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin's command must not break the CLI
            click.echo(f"sami-kit: warning: a plugin failed in register_commands: {type(exc).__name__}: {exc}", err=True)

    def invoke(self, ctx: click.Context) -> object:
        """Map sami-kit errors to one ``Error:`` line and their documented exit code (also under CliRunner)."""
        try:
            return super().invoke(ctx)
        except SamiKitError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            click.echo("Interrupted; work written so far is kept (rerun with --resume where supported).", err=True)
            ctx.exit(130)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted({*LAZY_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = LAZY_COMMANDS.get(cmd_name)
        if target is not None:
            module_name, attr = target.split(":")
            obj = getattr(importlib.import_module(module_name), attr)
            command = obj if isinstance(obj, click.Command) else obj(cmd_name)
            self.commands[cmd_name] = command
            return command
        self._load_plugin_commands()
        return self.commands.get(cmd_name)


def _set_plugins_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        from sami_toolkit.plugins.loading import set_plugins_dir

        set_plugins_dir(value)
    return value


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="sami-kit")
@click.option("--plugins-dir", type=click.Path(file_okay=False), expose_value=False, is_eager=True,
              callback=_set_plugins_dir, envvar="SAMI_KIT_PLUGINS_DIR",
              help="Also load every *.py file in this directory as a plugin.")
def cli() -> None:
    """sami-kit: align language models to a written constitution with SAMI, and evaluate them with LLM judges.

    \b
    Exit codes: 0 success / gate passed, 1 gate failed (regression), 2 usage or config error,
    3 gate inconclusive, 4 infrastructure or budget error.
    """


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the CLI and maps sami-kit errors to one line and their exit code."""
    try:
        cli.main(args=argv, prog_name="sami-kit")  # standalone: click maps usage errors to exit 2
    except SamiKitError as exc:  # raised outside a command, e.g. a strict-mode plugin failure while listing --help
        click.echo(f"Error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
