"""Plugin discovery and loading (pluggy project ``sami_kit``).

Sources, in load order:

1. built-in plugins (``sami_toolkit.builtin.*``), always loaded;
2. the entry-point group ``sami_kit`` of installed distributions (first-party ``plugins/*`` and third parties);
3. ``--plugins-dir DIR`` (or ``SAMI_KIT_PLUGINS_DIR``): every ``*.py`` file in DIR is loaded as a one-off plugin.

``SAMI_KIT_LOAD_PLUGINS=a,b`` pins which entry-point plugins load (by distribution or entry-point name; an empty
value loads none).  A plugin that fails to import, or that implements a misspelled hook, is reported on stderr and
in ``sami-kit plugins`` and then skipped, so every other command keeps working (llm issue #1280);
``SAMI_KIT_STRICT_PLUGINS=1`` makes any such failure fatal.

This module imports only pluggy and the standard library: plugin modules are expected to import their heavy
component modules inside the hook functions, which keeps ``sami-kit --help`` fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType

import pluggy

from sami_toolkit.core import hookspecs
from sami_toolkit.core.errors import PluginError

BUILTIN_PLUGINS: tuple[str, ...] = (
    "sami_toolkit.builtin.losses",
    "sami_toolkit.builtin.samplers",
    "sami_toolkit.builtin.trainers",
    "sami_toolkit.builtin.evaluators",
    "sami_toolkit.builtin.judges",
    "sami_toolkit.builtin.writers",
    "sami_toolkit.builtin.query_sources",
)

ENTRY_POINT_GROUP = "sami_kit"


@dataclass
class PluginRecord:
    """What ``sami-kit plugins`` reports for one plugin."""

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
    """A pluggy manager plus the load report of every plugin it tried."""

    def __init__(self, plugins_dir: str | os.PathLike | None = None) -> None:
        self.pm = pluggy.PluginManager("sami_kit")
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self.strict = os.environ.get("SAMI_KIT_STRICT_PLUGINS", "") not in ("", "0", "false", "False")
        self._load_builtins()
        self._load_entry_points()
        plugins_dir = plugins_dir or os.environ.get("SAMI_KIT_PLUGINS_DIR") or None
        if plugins_dir:
            self._load_directory(str(plugins_dir))

    # -- reporting -----------------------------------------------------------------------------------------
    def _fail(self, record: PluginRecord, message: str) -> None:
        record.error = message
        record.hooks = []
        self.records.append(record)
        if self.strict:
            raise PluginError(f"plugin '{record.name}' failed to load: {message}",
                              hint="unset SAMI_KIT_STRICT_PLUGINS to skip broken plugins")
        print(f"sami-kit: warning: plugin '{record.name}' failed to load and was skipped: {message}", file=sys.stderr)

    def _register(self, module: ModuleType, record: PluginRecord) -> None:
        """Register ``module`` and validate its hook names (a misspelling is an error, pluggy ``check_pending``)."""
        if self.pm.is_registered(module):
            return
        try:
            self.pm.register(module, name=record.name)
        except ValueError as exc:  # name already registered
            self._fail(record, str(exc))
            return
        except pluggy.PluginValidationError as exc:
            self._fail(record, str(exc))
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(module)
            known = ", ".join(hookspecs.ALL_HOOKS)
            self._fail(record, f"{exc} (known hooks: {known})")
            return
        record.hooks = sorted(impl_name for impl_name in hookspecs.ALL_HOOKS
                              if any(impl.plugin is module for impl in getattr(self.pm.hook, impl_name).get_hookimpls()))
        self.records.append(record)

    # -- sources -------------------------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        from sami_toolkit import __version__

        for module_name in BUILTIN_PLUGINS:
            record = PluginRecord(name=module_name, version=__version__, builtin=True, source="builtin")
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:  # noqa: BLE001 - reported, never fatal unless strict
                self._fail(record, f"{type(exc).__name__}: {exc}")
                continue
            self._register(module, record)

    def _load_entry_points(self) -> None:
        pinned_env = os.environ.get("SAMI_KIT_LOAD_PLUGINS")
        pinned = None if pinned_env is None else {p.strip() for p in pinned_env.split(",") if p.strip()}
        for ep in iter_entry_points(ENTRY_POINT_GROUP):
            if pinned is not None and ep.dist_name not in pinned and ep.name not in pinned:
                continue
            record = PluginRecord(name=ep.dist_name, version=ep.version, source=f"entry point {ep.name} = {ep.value}")
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
            module_name = f"sami_kit_plugins_dir.{stem}"
            try:
                spec = importlib.util.spec_from_file_location(module_name, path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001
                sys.modules.pop(module_name, None)
                self._fail(record, f"{type(exc).__name__}: {exc}")
                continue
            self._register(module, record)

    # -- queries -------------------------------------------------------------------------------------------
    def plugin_name(self, plugin: object) -> str:
        return self.pm.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))


@dataclass
class EntryPoint:
    """One ``[sami_kit]`` entry point of an installed distribution."""

    name: str
    value: str
    dist_name: str
    version: str | None

    def load(self) -> ModuleType:
        module_name, _, attr = self.value.partition(":")
        module = importlib.import_module(module_name.strip())
        return getattr(module, attr.strip()) if attr else module


def iter_entry_points(group: str) -> list[EntryPoint]:
    """Entry points of ``group`` from the ``*.dist-info`` folders on ``sys.path``.

    Why not ``importlib.metadata.entry_points``: importing it (and the email parser behind it) costs ~45 ms,
    a third of the start-up budget of ``sami-kit --help``. Reading ``entry_points.txt`` directly is what it does
    underneath; the first distribution found on ``sys.path`` wins, as with importlib.metadata.
    """
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            if not folder.endswith((".dist-info", ".egg-info")):
                continue
            base = os.path.join(entry or ".", folder)
            ep_file = os.path.join(base, "entry_points.txt")
            if not os.path.isfile(ep_file):
                continue
            dist_name, version = _dist_name_version(base, folder)
            key = dist_name.lower().replace("_", "-")
            if key in seen:
                continue
            seen.add(key)
            found.extend(EntryPoint(name, value, dist_name, version) for name, value in _read_group(ep_file, group))
    return found


def _read_group(path: str, group: str) -> list[tuple[str, str]]:
    items, current = [], None
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1].strip()
            elif current == group and "=" in line:
                name, value = line.split("=", 1)
                items.append((name.strip(), value.strip()))
    return items


def _dist_name_version(base: str, folder: str) -> tuple[str, str | None]:
    """Name and version from the METADATA/PKG-INFO header (falls back to the folder name)."""
    stem = folder.rsplit(".", 1)[0]
    name, _, version = stem.partition("-")
    for meta_name in ("METADATA", "PKG-INFO"):
        meta = os.path.join(base, meta_name)
        if os.path.isfile(meta):
            with open(meta, encoding="utf-8") as handle:
                for line in handle:
                    if not line.strip():
                        break
                    if line.startswith("Name:"):
                        name = line[5:].strip()
                    elif line.startswith("Version:"):
                        version = line[8:].strip()
            break
    return name, version or None


_SYSTEM: PluginSystem | None = None
_PLUGINS_DIR: str | None = None


def set_plugins_dir(path: str | None) -> None:
    """Set the ``--plugins-dir`` for the next :func:`get_plugin_system` (resets a loaded system)."""
    global _PLUGINS_DIR
    _PLUGINS_DIR = path
    reset_plugins()


def get_plugin_system() -> PluginSystem:
    """The process-wide plugin system, loaded on first use."""
    global _SYSTEM
    if _SYSTEM is None:
        _SYSTEM = PluginSystem(_PLUGINS_DIR)
    return _SYSTEM


def get_plugin_manager() -> pluggy.PluginManager:
    return get_plugin_system().pm


def reset_plugins() -> None:
    """Forget loaded plugins and the component registry (tests, ``--plugins-dir``)."""
    global _SYSTEM
    _SYSTEM = None
    from sami_toolkit.plugins import registry

    registry.reset_registry()
