"""Plugin discovery and loading (pluggy project ``sami_kit``): one :class:`PluginSystem` per CLI invocation.

Sources, in load order:

1. built-in plugins (``sami_toolkit.builtin.*``), always loaded;
2. the entry-point group ``sami_kit`` of installed distributions (first-party ``plugins/*`` and third parties);
3. ``--plugins-dir DIR`` (or ``SAMI_KIT_PLUGINS_DIR``): every ``*.py`` file in DIR is loaded as a one-off plugin;
4. plugin objects handed over in code (``extra_plugins=`` or :meth:`PluginSystem.register_plugin`) — how tests and
   embedding programs add components without packaging them.

``SAMI_KIT_LOAD_PLUGINS=a,b`` pins which entry-point plugins load (by distribution or entry-point name; an empty
value loads none).  A plugin that fails to import, or that implements a misspelled hook, is reported on stderr and
in ``sami-kit plugins`` and then skipped, so every other command keeps working (llm issue #1280) — as is an
installed distribution whose metadata cannot be read (bytes that are not UTF-8);
``SAMI_KIT_STRICT_PLUGINS=1`` makes any such failure fatal.

Why an object and not a process-wide singleton: two invocations in one process (tests, a notebook, a program that
embeds sami-kit) must not see each other's ``--plugins-dir`` or test plugins.  The component registry is built
from a system by :class:`sami_toolkit.plugins.registry.Registry`; this module knows nothing of it.

This module imports only pluggy, the standard library and ``core``: plugin modules are expected to import their
heavy component modules inside the hook functions, which keeps ``sami-kit --help`` fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Iterable

import pluggy

from sami_toolkit.core import hookspecs
from sami_toolkit.core.errors import PluginError
from sami_toolkit.core.version import __version__
from sami_toolkit.plugins.entry_points import ENTRY_POINT_GROUP, iter_entry_points

BUILTIN_PLUGINS: tuple[str, ...] = (
    "sami_toolkit.builtin.losses",
    "sami_toolkit.builtin.samplers",
    "sami_toolkit.builtin.trainers",
    "sami_toolkit.builtin.evaluators",
    "sami_toolkit.builtin.judges",
    "sami_toolkit.builtin.writers",
    "sami_toolkit.builtin.query_sources",
    "sami_toolkit.builtin.trackers",
)

#: environment variables read when a system is built (documented in docs/plugins.md).
PLUGINS_DIR_ENV = "SAMI_KIT_PLUGINS_DIR"
LOAD_PLUGINS_ENV = "SAMI_KIT_LOAD_PLUGINS"
STRICT_ENV = "SAMI_KIT_STRICT_PLUGINS"


@dataclass
class PluginRecord:
    """What ``sami-kit plugins`` reports for one plugin (and the run manifest records)."""

    name: str
    version: str | None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    builtin: bool = False
    source: str = ""

    def as_json(self) -> dict:
        return {"name": self.name, "version": self.version, "hooks": self.hooks, "error": self.error,
                "builtin": self.builtin, "source": self.source}


class PluginSystem:
    """A pluggy manager plus the load report of every plugin it tried.

    ``plugins_dir`` (default: ``$SAMI_KIT_PLUGINS_DIR``) adds a directory of one-off plugin files;
    ``extra_plugins`` is an iterable of ``(name, plugin)`` pairs registered after everything else, exactly as
    :meth:`register_plugin` would.  :attr:`generation` changes whenever the set of plugins changes, so a registry
    built from this system knows when to rebuild.
    """

    def __init__(self, plugins_dir: str | os.PathLike | None = None, *,
                 extra_plugins: Iterable[tuple[str, object]] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self.generation = 0
        self.strict = os.environ.get(STRICT_ENV, "") not in ("", "0", "false", "False")
        self._load_builtins()
        self._load_entry_points()
        plugins_dir = plugins_dir or os.environ.get(PLUGINS_DIR_ENV) or None
        self.plugins_dir = str(plugins_dir) if plugins_dir else None
        if self.plugins_dir:
            self._load_directory(self.plugins_dir)
        for name, plugin in extra_plugins:
            self.register_plugin(plugin, name)

    # -- public API ----------------------------------------------------------------------------------------
    @property
    def hook(self) -> Any:
        """pluggy's hook relay: ``system.hook.register_commands(cli=group)``."""
        return self.pm.hook

    def register_plugin(self, plugin: object, name: str, *, version: str | None = None,
                        source: str = "registered in code") -> PluginRecord:
        """Register a plugin object (a module, class or instance with ``@hookimpl`` methods) under ``name``.

        Unlike a plugin found on disk, a plugin handed over in code that cannot be registered (a duplicate name, a
        misspelled hook) raises :class:`~sami_toolkit.core.errors.PluginError`: its author is the caller."""
        record = PluginRecord(name=name, version=version, source=source)
        error = self._register(plugin, record, found=False)
        if error is not None:
            raise PluginError(f"plugin '{name}' could not be registered: {error}")
        return record

    def unregister_plugin(self, name: str) -> None:
        """Forget the plugin registered as ``name`` (no error if there is none)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.records = [r for r in self.records if r.name != name]
        self.generation += 1

    def plugin_name(self, plugin: object) -> str:
        return self.pm.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))

    def record_failure(self, plugin_name: str, message: str) -> None:
        """Note a failure found after loading (e.g. in a ``register_*`` hook) on the plugin's record."""
        for record in self.records:
            if record.name == plugin_name and record.error is None:
                record.error = message

    # -- reporting -----------------------------------------------------------------------------------------
    def _fail(self, record: PluginRecord, message: str) -> None:
        record.error = message
        record.hooks = []
        self.records.append(record)
        if self.strict:
            raise PluginError(f"plugin '{record.name}' failed to load: {message}",
                              hint=f"unset {STRICT_ENV} to skip broken plugins")
        print(f"sami-kit: warning: plugin '{record.name}' failed to load and was skipped: {message}", file=sys.stderr)

    def _register(self, plugin: object, record: PluginRecord, *, found: bool = True) -> str | None:
        """Register ``plugin`` and validate its hook names (a misspelling is an error, pluggy ``check_pending``).

        Returns ``None`` on success, else the error message.  A plugin ``found`` on disk or through an entry point
        is reported and skipped (:meth:`_fail`); one handed over in code just gets the message back."""
        if self.pm.is_registered(plugin):
            return None
        error = None
        try:
            self.pm.register(plugin, name=record.name)
        except (ValueError, pluggy.PluginValidationError) as exc:  # name already registered / bad hookimpl
            error = str(exc)
        else:
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError as exc:
                self.pm.unregister(plugin)
                error = f"{exc} (known hooks: {', '.join(hookspecs.ALL_HOOKS)})"
        if error is not None:
            if found:
                self._fail(record, error)
            return error
        record.hooks = sorted(name for name in hookspecs.ALL_HOOKS
                              if any(impl.plugin is plugin for impl in getattr(self.pm.hook, name).get_hookimpls()))
        self.records.append(record)
        self.generation += 1
        return None

    # -- sources -------------------------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        for module_name in BUILTIN_PLUGINS:
            record = PluginRecord(name=module_name, version=__version__, builtin=True, source="builtin")
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:  # noqa: BLE001 - reported, never fatal unless strict
                self._fail(record, f"{type(exc).__name__}: {exc}")
                continue
            self._register(module, record)

    def _load_entry_points(self) -> None:
        pinned_env = os.environ.get(LOAD_PLUGINS_ENV)
        pinned = None if pinned_env is None else {p.strip() for p in pinned_env.split(",") if p.strip()}
        for ep in iter_entry_points(ENTRY_POINT_GROUP):
            if pinned is not None and ep.dist_name not in pinned and ep.name not in pinned:
                continue
            record = PluginRecord(name=ep.dist_name, version=ep.version, source=f"entry point {ep.name} = {ep.value}")
            if ep.error is not None:  # unreadable metadata: reported and skipped like an import error
                record.source = "entry point (unreadable metadata)"
                self._fail(record, ep.error)
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break every command
                self._fail(record, f"{type(exc).__name__}: {exc}")
                continue
            self._register(module, record)

    def _load_directory(self, directory: str) -> None:
        if not os.path.isdir(directory):
            raise PluginError(f"--plugins-dir {directory}: not a directory")
        for file_name in sorted(f for f in os.listdir(directory) if f.endswith(".py")):
            path = os.path.join(directory, file_name)
            stem = file_name[:-3]
            record = PluginRecord(name=stem, version=None, source=path)
            try:
                module = _import_file(f"sami_kit_plugins_dir.{stem}", path)
            except Exception as exc:  # noqa: BLE001
                self._fail(record, f"{type(exc).__name__}: {exc}")
                continue
            self._register(module, record)


def _import_file(module_name: str, path: str) -> ModuleType:
    """Import one ``--plugins-dir`` file as ``module_name`` (it stays in ``sys.modules`` so pickling works)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module
