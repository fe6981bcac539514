"""The three hooks a plugin can implement, and the ``register`` callable each one receives.

Every hook takes one argument, ``register``: a callable the host builds and
passes in, so a plugin never imports a registry or touches global state.
Its type is the protocol named in the hook's signature (annotate with it to
have a type checker check your calls). Hooks are called once, when the
plugin manager is first built, never per row or per batch. Call sites use
keyword arguments only, so a future argument can be added without breaking
implementations that do not take it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from curator.backend import Backend
    from curator.filter import Filter
    from curator.task import Task

hookspec = pluggy.HookspecMarker("curator")
hookimpl = pluggy.HookimplMarker("curator")


class RegisterFilter(Protocol):
    """What :func:`register_filters` receives: ``register(cls, name=None)``."""

    def __call__(self, cls: type[Filter], name: str | None = None) -> None: ...


class RegisterTask(Protocol):
    """What :func:`register_tasks` receives: ``register(task, name=None)``."""

    def __call__(self, task: Task, name: str | None = None) -> None: ...


class RegisterBackend(Protocol):
    """What :func:`register_backends` receives: ``register(cls, name=None)``."""

    def __call__(self, cls: type[Backend], name: str | None = None) -> None: ...


@hookspec
def register_filters(register: RegisterFilter) -> None:
    """Register filter classes.

    Called once per plugin when the plugin manager is built. Call
    ``register(FilterClass)`` for each :class:`curator.Filter` subclass; the
    recipe name is the class's ``name`` attribute. Registering a name that
    another plugin already registered is an error naming both plugins.

    :param register: ``register(cls, name=None)``; ``name`` overrides ``cls.name``.
    """


@hookspec
def register_tasks(register: RegisterTask) -> None:
    """Register answer parsers (tasks).

    Called once per plugin when the plugin manager is built. Call
    ``register(task)`` with a :class:`curator.Task` instance; its ``name`` is
    what recipes and ``--task`` refer to.

    :param register: ``register(task, name=None)``.
    """


@hookspec
def register_backends(register: RegisterBackend) -> None:
    """Register generation backends used by ``curator generate`` and ``curator eval``.

    Called once per plugin when the plugin manager is built. Call
    ``register(BackendClass)`` with a :class:`curator.Backend` subclass; its
    ``name`` is what ``--backend`` refers to.

    :param register: ``register(cls, name=None)``.
    """
