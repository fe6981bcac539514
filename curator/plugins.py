"""Finding plugins and what they register.

Plugins come from the ``curator`` entry-point group, built-ins included, so
the project exercises the same path a third-party package does. The manager
is built once per process; hooks are called once each, with a ``register``
closure that records which plugin (and distribution) registered what.

``CURATOR_PLUGINS=a,b`` loads only the entry points named; ``CURATOR_TRACE=1``
prints every hook call to stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Literal

import pluggy

from curator import hookspecs
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


@dataclass
class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    entries: dict[Kind, dict[str, Registered]] = field(
        default_factory=lambda: {"filter": {}, "task": {}, "backend": {}}
    )

    def add(self, kind: Kind, name: str, obj: Any, plugin: str, distribution: str | None) -> None:
        table = self.entries[kind]
        if name in table:
            raise CuratorError(
                f"plugin '{plugin}': {kind} '{name}' is already registered by plugin '{table[name].plugin}'"
            )
        table[name] = Registered(kind, name, obj, plugin, distribution)

    def _get(self, kind: Kind, name: str) -> Any:
        table = self.entries[kind]
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise CuratorError(f"unknown {kind} '{name}' (registered: {known}; see 'curator plugins')")
        return table[name].obj

    def filter(self, name: str) -> type[Filter]:
        return self._get("filter", name)

    def task(self, name: str) -> Task:
        return self._get("task", name)

    def backend(self, name: str) -> type:
        return self._get("backend", name)

    def all(self) -> list[Registered]:
        return [entry for table in self.entries.values() for entry in table.values()]


def new_plugin_manager() -> pluggy.PluginManager:
    """A manager with the hookspecs and no plugins."""
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
    for ep in entry_points(group="curator"):
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
        _DISTRIBUTIONS[ep.name] = f"{dist.metadata['Name']} {dist.version}" if dist else None
    pm.check_pending()


_DISTRIBUTIONS: dict[str, str | None] = {}


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call each registration hook once per plugin, recording who registered what."""
    registry = Registry()
    for kind, hook_name in _HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin = impl.plugin_name
            impl.function(**_kwargs(impl.argnames, _register(registry, kind, plugin)))
    return registry


def _kwargs(argnames: Iterable[str], register: Callable[..., None]) -> dict[str, Any]:
    return {"register": register} if "register" in argnames else {}


def _register(registry: Registry, kind: Kind, plugin: str) -> Callable[..., None]:
    def register(obj: Any, name: str | None = None) -> None:
        resolved = name or getattr(obj, "name", "")
        if not resolved:
            raise CuratorError(f"plugin '{plugin}': registered a {kind} with no name")
        if kind == "filter" and not (isinstance(obj, type) and issubclass(obj, Filter)):
            raise CuratorError(f"plugin '{plugin}': filter '{resolved}' is not a curator.Filter subclass")
        if kind == "task" and not isinstance(obj, Task):
            raise CuratorError(f"plugin '{plugin}': task '{resolved}' is not a curator.Task instance")
        registry.add(kind, resolved, obj, plugin, _DISTRIBUTIONS.get(plugin))

    return register


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
