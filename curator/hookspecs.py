"""The three hooks a plugin can implement.

Every hook takes one argument, ``register``: a callable the host builds and
passes in, so a plugin never imports a registry or touches global state.
Hooks are called once, when the plugin manager is first built, never per row
or per batch. Call sites use keyword arguments only, so a future argument can
be added without breaking implementations that do not take it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("curator")
hookimpl = pluggy.HookimplMarker("curator")


@hookspec
def register_filters(register: Callable[..., Any]) -> None:
    """Register filter classes.

    Called once per plugin when the plugin manager is built. Call
    ``register(FilterClass)`` for each :class:`curator.Filter` subclass; the
    recipe name is the class's ``name`` attribute. Registering a name that
    another plugin already registered is an error naming both plugins.

    :param register: ``register(cls, name=None)``; ``name`` overrides ``cls.name``.
    """


@hookspec
def register_tasks(register: Callable[..., Any]) -> None:
    """Register answer parsers (tasks).

    Called once per plugin when the plugin manager is built. Call
    ``register(task)`` with a :class:`curator.Task` instance; its ``name`` is
    what recipes and ``--task`` refer to.

    :param register: ``register(task, name=None)``.
    """


@hookspec
def register_backends(register: Callable[..., Any]) -> None:
    """Register generation backends used by ``curator generate`` and ``curator eval``.

    Called once per plugin when the plugin manager is built. Call
    ``register(BackendClass)`` with a :class:`curator.Backend` subclass; its
    ``name`` is what ``--backend`` refers to.

    :param register: ``register(cls, name=None)``.
    """
