"""Finding plugins and what they register.

Plugins come from the ``curator`` entry-point group, built-ins included, so
the project exercises the same path a third-party package does. The manager
is built once per process; hooks are called once each, with a ``register``
closure that records which plugin (and distribution) registered what.

``CURATOR_PLUGINS=a,b`` loads only the entry points named (a name that is not
installed is an error, not a silent omission); ``CURATOR_TRACE=1`` prints
every hook call to stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Literal, cast

import pluggy

from curator import hookspecs
from curator.backend import Backend
from curator.errors import CuratorError
from curator.filter import Filter
from curator.task import Task

Kind = Literal["filter", "task", "backend"]
_HOOKS: dict[Kind, str] = {"filter": "register_filters", "task": "register_tasks", "backend": "register_backends"}


@dataclass(frozen=True)
class Registered:
    """One thing a plugin registered."""

    kind: Kind
    name: str
    obj: Any
    plugin: str
    distribution: str | None


class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    def __init__(self) -> None:
        self._tables: dict[Kind, dict[str, Registered]] = {kind: {} for kind in _HOOKS}

    def add(self, entry: Registered) -> None:
        table = self._tables[entry.kind]
        if entry.name in table:
            raise CuratorError(
                f"plugin '{entry.plugin}': {entry.kind} '{entry.name}' is already registered "
                f"by plugin '{table[entry.name].plugin}'"
            )
        table[entry.name] = entry

    def entry(self, kind: Kind, name: str) -> Registered:
        """What was registered as ``name``, with the plugin and distribution it came from."""
        table = self._tables[kind]
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise CuratorError(f"unknown {kind} '{name}' (registered: {known}; see 'curator plugins')")
        return table[name]

    def filter(self, name: str) -> type[Filter]:
        return cast("type[Filter]", self.entry("filter", name).obj)

    def task(self, name: str) -> Task:
        return cast(Task, self.entry("task", name).obj)

    def backend(self, name: str) -> type[Backend]:
        return cast("type[Backend]", self.entry("backend", name).obj)

    def all(self) -> list[Registered]:
        return [entry for table in self._tables.values() for entry in table.values()]

    def replaced_by(self, other: Registry) -> Registry:
        """This registry with ``other``'s entries added, each replacing one of the same kind and name."""
        merged = Registry()
        for entry in self.all():
            if entry.name not in other._tables[entry.kind]:
                merged.add(entry)
        for entry in other.all():
            merged.add(entry)
        return merged


def new_plugin_manager() -> pluggy.PluginManager:
    """A manager with the hookspecs and no plugins; ``CURATOR_TRACE`` set prints its hook calls."""
    pm = pluggy.PluginManager("curator")
    pm.add_hookspecs(hookspecs)
    if os.environ.get("CURATOR_TRACE"):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


def load_entry_point_plugins(pm: pluggy.PluginManager) -> None:
    """Register every plugin of the ``curator`` entry-point group (or those allow-listed)."""
    allowed = os.environ.get("CURATOR_PLUGINS")
    names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    installed = entry_points(group="curator")
    unknown = sorted((names or set()) - {ep.name for ep in installed})
    if unknown:
        raise CuratorError(
            f"CURATOR_PLUGINS names '{unknown[0]}', which is not an installed plugin "
            f"(installed: {', '.join(sorted(ep.name for ep in installed))})"
        )
    labels: dict[int, str] = {}  # a distribution's metadata is parsed on every read: once per distribution
    for ep in installed:
        if names is not None and ep.name not in names:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must say which one it is
            raise CuratorError(f"plugin '{ep.name}' ({ep.value}) failed to import: {exc}") from exc
        pm.register(plugin, name=ep.name)
        dist = getattr(ep, "dist", None)
        if dist is not None and id(dist) not in labels:
            metadata = dist.metadata
            labels[id(dist)] = f"{metadata['Name']} {metadata['Version']}"
        _DISTRIBUTIONS[ep.name] = labels[id(dist)] if dist is not None else None
    pm.check_pending()


_DISTRIBUTIONS: dict[str, str | None] = {}


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call each registration hook once per plugin, recording who registered what.

    Each call goes through pluggy (a hook caller narrowed to one plugin), so
    tracing and hook-call monitoring see it, and pluggy passes ``register``
    only to implementations that take it; the plugin a call reaches is what
    its ``register`` records as the source.
    """
    registry = Registry()
    plugins = pm.get_plugins()
    for kind, hook_name in _HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            others = [plugin for plugin in plugins if plugin is not impl.plugin]
            pm.subset_hook_caller(hook_name, remove_plugins=others)(
                register=_Register(registry, kind, impl.plugin_name)
            )
    return registry


def _is_subclass(base: type) -> Callable[[Any], bool]:
    return lambda obj: isinstance(obj, type) and issubclass(obj, base)


_EXPECTED: dict[Kind, tuple[Callable[[Any], bool], str]] = {
    "filter": (_is_subclass(Filter), "a curator.Filter subclass"),
    "task": (lambda obj: isinstance(obj, Task), "a curator.Task instance"),
    "backend": (_is_subclass(Backend), "a curator.Backend subclass"),
}


class _Register:
    """The ``register`` one plugin's hook receives; it records that plugin as the source."""

    def __init__(self, registry: Registry, kind: Kind, plugin: str) -> None:
        self.registry, self.kind, self.plugin = registry, kind, plugin

    def __call__(self, obj: Any, name: str | None = None) -> None:
        resolved = name or getattr(obj, "name", "")
        if not resolved:
            raise CuratorError(f"plugin '{self.plugin}': registered a {self.kind} with no name")
        accepts, expected = _EXPECTED[self.kind]
        if not accepts(obj):
            raise CuratorError(f"plugin '{self.plugin}': {self.kind} '{resolved}' is not {expected}")
        self.registry.add(Registered(self.kind, resolved, obj, self.plugin, _DISTRIBUTIONS.get(self.plugin)))

    def __repr__(self) -> str:  # what CURATOR_TRACE prints for the argument
        return f"<register {self.kind}s of plugin '{self.plugin}'>"


def registry_for(plugins: Iterable[ModuleType | object], *, entry_points_too: bool = False) -> Registry:
    """A registry from the given plugin objects (and optionally the installed ones)."""
    pm = new_plugin_manager()
    if entry_points_too:
        load_entry_point_plugins(pm)
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    return build_registry(pm)


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry of installed plugins, built on first use."""
    pm = new_plugin_manager()
    load_entry_point_plugins(pm)
    return build_registry(pm)
