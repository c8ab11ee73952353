"""The ``sami-kit`` command line.

Subcommands live in their own modules and are imported only when used (``LazyGroup``), so ``sami-kit --help``
imports click and pluggy but never torch, transformers, deepspeed, vllm, litellm, pydantic or rich.
Every :class:`~sami_toolkit.core.errors.SamiKitError` becomes one ``Error: ...`` line on stderr and its exit code.
Anything else that escapes a command is a bug, reported by :mod:`sami_toolkit.cli.guard` as one line with exit 4
and its traceback in a log file: exit 1 means "regression" to a CI gate, so a crash must never produce it.
The plugins of an invocation live on its click context (:mod:`sami_toolkit.cli.session`), never in a global.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

import click

from sami_toolkit.cli.guard import broken_pipe, error_line, guarded, internal_error
from sami_toolkit.cli.session import CliSession, current_session
from sami_toolkit.core.errors import SamiKitError
from sami_toolkit.core.hookspecs import COMPONENT_HOOKS
from sami_toolkit.core.version import __version__

if TYPE_CHECKING:  # pragma: no cover - typing only
    from sami_toolkit.plugins.registry import Registry

#: command name -> "module:attribute" (a click command, or a factory called with the command name)
LAZY_COMMANDS: dict[str, str] = {
    "run": "sami_toolkit.cli.run_cmd:run",
    "eval": "sami_toolkit.cli.eval_cmd:eval_group",
    "report": "sami_toolkit.cli.report_cmd:report",
    "principles": "sami_toolkit.cli.principles_cmd:principles",
    "config": "sami_toolkit.cli.config_cmd:config",
    "plugins": "sami_toolkit.cli.plugins_cmd:plugins",
    "push": "sami_toolkit.cli.push_cmd:push",
    **{kind: "sami_toolkit.cli.components_cmd:kind_group" for kind in COMPONENT_HOOKS.values()},
}


class LazyGroup(click.Group):
    """A group whose built-in subcommands are imported on demand and whose plugin commands come from the
    ``register_commands`` hook of the invocation's plugin system."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        if parent is not None:
            return super().make_context(info_name, args, parent=parent, **extra)

        def make_root() -> click.Context:  # the root context carries the invocation's plugins (ctx.obj)
            extra["obj"] = CliSession.wrap(extra.get("obj"))
            return super(LazyGroup, self).make_context(info_name, args, parent=parent, **extra)

        # parsing the root (--help lists plugin commands, loading plugins) runs before invoke: guard it as well
        return guarded(make_root)

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        """Commands added by plugins, collected once per invocation on a scratch group (so they never stick to
        this module-level group across invocations)."""
        session = current_session(ctx)
        if session.plugin_commands is None:
            collector = click.Group(self.name)
            session.plugin_commands = {}  # a plugin that lists commands from its hook must not recurse
            try:
                session.system.hook.register_commands(cli=collector)
            except SamiKitError:
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin's command must not break the CLI
                click.echo(f"sami-kit: warning: a plugin failed in register_commands: {type(exc).__name__}: {exc}",
                           err=True)
            session.plugin_commands = dict(collector.commands)
        return session.plugin_commands

    def invoke(self, ctx: click.Context) -> object:
        """Map sami-kit errors to one ``Error:`` line and their documented exit code, and any other exception to
        one "internal error" line and exit 4 (also under CliRunner, which bypasses :func:`main`)."""
        return guarded(lambda: super(LazyGroup, self).invoke(ctx))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*LAZY_COMMANDS, *self.commands, *self._plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = LAZY_COMMANDS.get(cmd_name)
        if target is not None:
            module_name, attr = target.split(":")
            obj = getattr(importlib.import_module(module_name), attr)
            return obj if isinstance(obj, click.Command) else obj(cmd_name)
        return self._plugin_commands(ctx).get(cmd_name)


def _set_plugins_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        current_session(ctx).set_plugins_dir(value)
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
    3 gate inconclusive, 4 infrastructure, budget or internal error, 130 interrupted.
    """


def main(argv: list[str] | None = None, *, registry: "Registry | None" = None) -> None:
    """Console entry point: runs the CLI and maps sami-kit errors to one line and their exit code.

    ``registry`` (optional) is used instead of loading the plugins afresh — how tests and embedding programs run
    commands with components they registered in code."""
    try:
        # standalone: click maps usage errors to exit 2
        cli.main(args=argv, prog_name="sami-kit", obj=registry)
    except SamiKitError as exc:  # raised outside a command, e.g. a strict-mode plugin failure while listing --help
        click.echo(error_line(exc), err=True)
        sys.exit(int(exc.exit_code))
    except BrokenPipeError:
        sys.exit(broken_pipe())
    except Exception as exc:  # noqa: BLE001 - a backstop: the guards in LazyGroup catch everything they can see
        sys.exit(internal_error(exc))
