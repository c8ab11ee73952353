"""Component registry: name -> class, built from a :class:`~sami_toolkit.plugins.loading.PluginSystem`.

The registry is built lazily, on first use, by calling every ``register_*`` hook once: building it imports the
component modules of every plugin, which ``sami-kit --help`` and ``sami-kit plugins`` never need.  Each hook
implementation is called separately with a ``register`` callback bound to its plugin, so a duplicate name is
reported naming *both* plugins (never silently renamed), and an unknown name answers "did you mean ...".

A registry holds its system (``registry.system``) and rebuilds itself when plugins are registered on it later
(``system.generation`` changed); there is no process-wide registry — the CLI builds one per invocation and hands
it down, and :func:`load_plugins` builds one for Python callers.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sami_toolkit.core.errors import PluginError, UnknownComponentError
from sami_toolkit.core.hookspecs import COMPONENT_HOOKS, singular
from sami_toolkit.plugins.loading import PluginSystem


@dataclass
class Entry:
    """One registered component class and the plugin that registered it."""

    cls: type
    plugin: str
    aliases: tuple[str, ...] = ()


class _Entries:
    """The name and alias tables of every kind, filled by the ``register`` callbacks."""

    def __init__(self) -> None:
        self.by_name: dict[str, dict[str, Entry]] = {kind: {} for kind in COMPONENT_HOOKS.values()}
        self.aliases: dict[str, dict[str, str]] = {kind: {} for kind in COMPONENT_HOOKS.values()}

    def add(self, kind: str, cls: type, plugin: str, aliases: Sequence[str] = ()) -> None:
        from sami_toolkit.core.components import BASE_CLASSES

        base = BASE_CLASSES[kind]
        name = getattr(cls, "name", "")
        if not isinstance(cls, type) or not issubclass(cls, base):
            raise PluginError(f"plugin '{plugin}' registered {cls!r} as a {singular(kind)}, "
                              f"but it is not a subclass of sami_toolkit.{base.__name__}")
        if not name:
            raise PluginError(f"plugin '{plugin}' registered {cls.__name__} without a `name` class attribute")
        for label in (name, *aliases):
            owner = self.owner(kind, label)
            if owner is not None:
                raise PluginError(f"duplicate {singular(kind)} name '{label}': registered by plugin '{owner}' "
                                  f"and again by plugin '{plugin}'",
                                  hint="uninstall one of them, or pin the set with SAMI_KIT_LOAD_PLUGINS")
        self.by_name[kind][name] = Entry(cls, plugin, tuple(aliases))
        for alias in aliases:
            self.aliases[kind][alias] = name

    def owner(self, kind: str, label: str) -> str | None:
        if label in self.by_name[kind]:
            return self.by_name[kind][label].plugin
        if label in self.aliases[kind]:
            return self.by_name[kind][self.aliases[kind][label]].plugin
        return None


class Registry:
    """All registered components of one plugin system, by kind (``samplers``, ``judges``, ...)."""

    def __init__(self, system: PluginSystem) -> None:
        self.system = system
        self._entries: _Entries | None = None
        self._generation = -1

    # -- building ------------------------------------------------------------------------------------------
    def _tables(self) -> _Entries:
        """The entry tables, (re)built when first needed or when the system's plugins changed."""
        if self._entries is None or self._generation != self.system.generation:
            generation = self.system.generation
            self._entries = _build(self.system)
            self._generation = generation
        return self._entries

    def load(self) -> "Registry":
        """Build the entries now (calls every ``register_*`` hook; raises PluginError on a duplicate name)."""
        self._tables()
        return self

    # -- queries -------------------------------------------------------------------------------------------
    def kinds(self) -> list[str]:
        return list(COMPONENT_HOOKS.values())

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind`` (aliases excluded), sorted."""
        return sorted(self._tables().by_name[kind])

    def entry(self, kind: str, name: str) -> Entry:
        """The entry for ``name`` (or an alias) of ``kind``; an unknown name suggests close matches."""
        tables = self._tables()
        if kind not in tables.by_name:
            raise UnknownComponentError(f"unknown component kind '{kind}'; kinds: {', '.join(tables.by_name)}")
        canonical = tables.aliases[kind].get(name, name)
        if canonical in tables.by_name[kind]:
            return tables.by_name[kind][canonical]
        known = sorted([*tables.by_name[kind], *tables.aliases[kind]])
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        suggestion = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        installed = ", ".join(self.names(kind)) or "none"
        raise UnknownComponentError(f"unknown {singular(kind)} '{name}'.{suggestion} Installed {kind}: {installed}.",
                                    hint=f"`sami-kit {kind} list` shows them; `sami-kit plugins` shows what loaded")

    def get(self, kind: str, name: str) -> type:
        """The component class registered as ``name`` (or an alias) of ``kind``."""
        return self.entry(kind, name).cls

    def create(self, kind: str, name: str, options: Mapping[str, Any] | None = None, *, where: str = "") -> Any:
        """Instantiate the component ``name`` of ``kind`` with ``options`` (validated; errors name ``where``)."""
        return self.get(kind, name).from_options(options, where=where)


def _build(system: PluginSystem) -> _Entries:
    """Call each implementation of each ``register_*`` hook with a callback bound to its plugin."""
    entries = _Entries()
    for hook_name, kind in COMPONENT_HOOKS.items():
        for impl in getattr(system.hook, hook_name).get_hookimpls():
            plugin_name = system.plugin_name(impl.plugin)

            def register(cls: type, aliases: Sequence[str] = (), *, _kind: str = kind,
                         _plugin: str = plugin_name) -> None:
                entries.add(_kind, cls, _plugin, tuple(aliases))

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken hook implementation names its plugin
                if system.strict:
                    raise PluginError(f"plugin '{plugin_name}' failed in {hook_name}: "
                                      f"{type(exc).__name__}: {exc}") from exc
                print(f"sami-kit: warning: plugin '{plugin_name}' failed in {hook_name} and was skipped: "
                      f"{type(exc).__name__}: {exc}", file=sys.stderr)
                system.record_failure(plugin_name, f"{hook_name}: {type(exc).__name__}: {exc}")
    return entries


def load_plugins(plugins_dir: str | os.PathLike | None = None, *,
                 extra_plugins: Sequence[tuple[str, object]] = ()) -> Registry:
    """A registry over a freshly loaded plugin system (built-ins, entry points, ``plugins_dir``, ``extra_plugins``).

    The Python counterpart of what one ``sami-kit`` invocation does; entries are built on first use."""
    return Registry(PluginSystem(plugins_dir, extra_plugins=extra_plugins))
