"""Component registry: name -> class, built by calling every ``register_*`` hook once.

Each hook implementation is called separately with a ``register`` callback bound to its plugin, so a duplicate
name is reported naming *both* plugins (never silently renamed), and an unknown name answers "did you mean ...".
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from sami_toolkit.core.errors import PluginError, UnknownComponentError
from sami_toolkit.core.hookspecs import COMPONENT_HOOKS, singular


@dataclass
class Entry:
    cls: type
    plugin: str
    aliases: tuple[str, ...] = ()


@dataclass
class Registry:
    """All registered components, by kind."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in COMPONENT_HOOKS.values()})
    aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in COMPONENT_HOOKS.values()})

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
            owner = self._owner(kind, label)
            if owner is not None:
                raise PluginError(f"duplicate {singular(kind)} name '{label}': registered by plugin '{owner}' "
                                  f"and again by plugin '{plugin}'",
                                  hint="uninstall one of them, or pin the set with SAMI_KIT_LOAD_PLUGINS")
        self.entries[kind][name] = Entry(cls, plugin, tuple(aliases))
        for alias in aliases:
            self.aliases[kind][alias] = name

    def _owner(self, kind: str, label: str) -> str | None:
        if label in self.entries[kind]:
            return self.entries[kind][label].plugin
        if label in self.aliases[kind]:
            return self.entries[kind][self.aliases[kind][label]].plugin
        return None

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def entry(self, kind: str, name: str) -> Entry:
        if kind not in self.entries:
            raise UnknownComponentError(f"unknown component kind '{kind}'; kinds: {', '.join(self.entries)}")
        canonical = self.aliases[kind].get(name, name)
        if canonical in self.entries[kind]:
            return self.entries[kind][canonical]
        known = sorted([*self.entries[kind], *self.aliases[kind]])
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        suggestion = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        installed = ", ".join(self.names(kind)) or "none"
        raise UnknownComponentError(f"unknown {singular(kind)} '{name}'.{suggestion} Installed {kind}: {installed}.",
                                    hint=f"`sami-kit {kind} list` shows them; `sami-kit plugins` shows what loaded")

    def get(self, kind: str, name: str) -> type:
        return self.entry(kind, name).cls


_REGISTRY: Registry | None = None


def _build() -> Registry:
    from sami_toolkit.plugins.loading import get_plugin_system

    system = get_plugin_system()
    registry = Registry()
    for hook_name, kind in COMPONENT_HOOKS.items():
        for impl in getattr(system.pm.hook, hook_name).get_hookimpls():
            plugin_name = system.plugin_name(impl.plugin)

            def register(cls: type, aliases: Sequence[str] = (), *, _kind: str = kind, _plugin: str = plugin_name) -> None:
                registry.add(_kind, cls, _plugin, tuple(aliases))

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken hook implementation names its plugin
                if system.strict:
                    raise PluginError(f"plugin '{plugin_name}' failed in {hook_name}: {type(exc).__name__}: {exc}") from exc
                import sys

                print(f"sami-kit: warning: plugin '{plugin_name}' failed in {hook_name} and was skipped: "
                      f"{type(exc).__name__}: {exc}", file=sys.stderr)
                for record in system.records:
                    if record.name == plugin_name and record.error is None:
                        record.error = f"{hook_name}: {type(exc).__name__}: {exc}"
    return registry


def get_registry() -> Registry:
    """The component registry (built on first use; imports the component modules of every plugin)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _build()
    return _REGISTRY


def reset_registry() -> None:
    global _REGISTRY
    _REGISTRY = None


def get_component(kind: str, name: str, options: Mapping[str, Any] | None = None, *, where: str = "") -> Any:
    """Instantiate the component ``name`` of ``kind`` with ``options`` (validated; errors name the field)."""
    cls = get_registry().get(kind, name)
    return cls.from_options(options, where=where)
