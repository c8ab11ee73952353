"""The plugins of one ``sami-kit`` invocation, kept on the click context (``ctx.obj``).

One invocation builds one :class:`~sami_toolkit.plugins.loading.PluginSystem` (honouring ``--plugins-dir`` and
``SAMI_KIT_PLUGINS_DIR``) the first time a command needs it, and at most one registry over it; commands get them
from here and pass the registry down to the loop, compare and the evaluators.  Nothing is kept between
invocations, so two runs in one process (tests, notebooks) never see each other's plugins.

A caller that already has plugins — a test that registered a fake, a program embedding sami-kit — hands them in as
the context object: ``main(argv, registry=registry)`` or ``CliRunner().invoke(cli, args, obj=registry)`` (a
:class:`~sami_toolkit.plugins.registry.Registry` or a :class:`~sami_toolkit.plugins.loading.PluginSystem`).

Only click and the standard library are imported at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # pragma: no cover - typing only
    from sami_toolkit.plugins.loading import PluginSystem
    from sami_toolkit.plugins.registry import Registry


class CliSession:
    """Lazily built plugin system and registry of one invocation."""

    def __init__(self, *, system: "PluginSystem | None" = None, registry: "Registry | None" = None) -> None:
        self.plugins_dir: str | None = None
        self._registry = registry
        self._system = registry.system if registry is not None else system
        self.plugin_commands: dict[str, click.Command] | None = None

    @classmethod
    def wrap(cls, obj: Any) -> "CliSession":
        """The session for a context object given to ``main``/``invoke``: None, a session, a Registry or a
        PluginSystem."""
        if obj is None:
            return cls()
        if isinstance(obj, CliSession):
            return obj
        from sami_toolkit.plugins.loading import PluginSystem
        from sami_toolkit.plugins.registry import Registry

        if isinstance(obj, Registry):
            return cls(registry=obj)
        if isinstance(obj, PluginSystem):
            return cls(system=obj)
        raise TypeError(f"sami-kit's context object must be a Registry or a PluginSystem, not {type(obj).__name__}")

    def set_plugins_dir(self, path: str) -> None:
        if self._system is not None and self._system.plugins_dir != path:
            raise click.UsageError("--plugins-dir cannot be combined with plugins handed in by the caller")
        self.plugins_dir = path

    @property
    def system(self) -> "PluginSystem":
        if self._system is None:
            from sami_toolkit.plugins.loading import PluginSystem

            self._system = PluginSystem(self.plugins_dir)
        return self._system

    @property
    def registry(self) -> "Registry":
        if self._registry is None:
            from sami_toolkit.plugins.registry import Registry

            self._registry = Registry(self.system)
        return self._registry


def current_session(ctx: click.Context | None = None) -> CliSession:
    """The session of the running invocation (created on the root context if a caller bypassed ``main``)."""
    root = (ctx or click.get_current_context()).find_root()
    if not isinstance(root.obj, CliSession):
        root.obj = CliSession.wrap(root.obj)
    return root.obj


def current_registry(ctx: click.Context | None = None) -> "Registry":
    """The component registry of the running invocation (built on first use)."""
    return current_session(ctx).registry


def current_plugin_system(ctx: click.Context | None = None) -> "PluginSystem":
    """The plugin system of the running invocation (loaded on first use)."""
    return current_session(ctx).system
