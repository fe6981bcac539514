"""Each hook is exercised by a test named after it, and documented with its signature."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import typing
from dataclasses import dataclass

import pyarrow as pa
import pytest
from conftest import ROOT

from curator import Backend, CuratorError, Filter, Selection, Task, hookimpl, hookspecs
from curator.backend import BackendOptions
from curator.plugins import get_registry, registry_for

HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]


def parameters(function, *, skip: int = 0) -> str:
    """``(a, b=None)``: a signature as the docs write it, without annotations."""
    params = list(inspect.signature(function).parameters.values())[skip:]
    return "(" + ", ".join(str(p.replace(annotation=inspect.Parameter.empty)) for p in params) + ")"


def documented_signature(hook: str) -> str:
    """The README's line for a hook, derived from its spec and the protocol of its ``register``."""
    spec = getattr(hookspecs, hook)
    register = typing.get_type_hints(spec)["register"]
    return f"`{hook}{parameters(spec)}`: `register{parameters(register.__call__, skip=1)}`"


def test_every_hook_has_a_test_and_is_documented():
    tests = {name for name in dir(sys.modules[__name__]) if name.startswith("test_hook_")}
    readme = (ROOT / "README.md").read_text()
    assert len(HOOKS) == 3
    for hook in HOOKS:
        assert f"test_hook_{hook}" in tests
        assert documented_signature(hook) in readme, documented_signature(hook)


def test_hook_tracing_prints_every_registration_call():
    env = {**os.environ, "CURATOR_TRACE": "1"}
    run = subprocess.run([sys.executable, "-m", "curator", "plugins"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].split() == ["kind", "name", "plugin", "distribution"]
    for hook in HOOKS:
        assert f"{hook} [hook]" in run.stderr and f"finish {hook} -->" in run.stderr
    assert "register: <register filters of plugin 'correctness'>" in run.stderr
    assert "register: <register backends of plugin 'openai_backend'>" in run.stderr
    filter_plugins = {e.plugin for e in get_registry().all() if e.kind == "filter"}
    assert run.stderr.count("register_filters [hook]") == len(filter_plugins)  # one call per plugin


@dataclass(kw_only=True)
class Everything(Filter):
    name = "everything"
    columns = ("one",)

    def score(self, batch, context):
        return {"one": pa.array([1] * batch.num_rows)}

    def select(self, batch, stats):
        return Selection(keep=[True] * batch.num_rows)


class Echo(Task):
    name = "echo"

    def extract(self, text):
        return text.strip() or None


class DummyBackend(Backend):
    name = "dummy"

    async def complete(self, request):
        raise NotImplementedError


class Plugin:
    @staticmethod
    @hookimpl
    def register_filters(register):
        register(Everything)
        register(Everything, name="everything_else")

    @staticmethod
    @hookimpl
    def register_tasks(register):
        register(Echo())

    @staticmethod
    @hookimpl
    def register_backends(register):
        register(DummyBackend)


def test_hook_register_filters():
    registry = registry_for([Plugin])
    assert registry.filter("everything") is Everything
    assert registry.filter("everything_else") is Everything
    with pytest.raises(CuratorError, match="unknown filter 'nothing'.*registered: everything, everything_else"):
        registry.filter("nothing")


def test_hook_register_tasks():
    task = registry_for([Plugin]).task("echo")
    assert task.extract(" 42 ") == "42"
    assert task.extract_batch(pa.array([" a", " ", None])).to_pylist() == ["a", None, None]


def test_hook_register_backends():
    assert registry_for([Plugin]).backend("dummy") is DummyBackend


def test_an_entry_names_the_plugin_it_came_from():
    entry = registry_for([Plugin]).entry("filter", "everything_else")
    assert (entry.kind, entry.name, entry.obj, entry.distribution) == ("filter", "everything_else", Everything, None)
    assert entry.plugin.startswith("Plugin")  # pluggy names a class plugin after itself
    with pytest.raises(CuratorError, match="unknown backend 'nothing'.*registered: dummy"):
        registry_for([Plugin]).entry("backend", "nothing")


def test_a_hook_without_register_is_still_called():
    calls = []

    class Observer:
        @staticmethod
        @hookimpl
        def register_tasks():
            calls.append("called")

    assert registry_for([Observer]).all() == [] and calls == ["called"]


def test_replaced_by_swaps_same_named_entries_and_keeps_the_rest():
    class Other(Everything):
        name = "everything"

    class Replacement:
        @staticmethod
        @hookimpl
        def register_filters(register):
            register(Other)

    merged = registry_for([Plugin]).replaced_by(registry_for([Replacement]))
    assert merged.filter("everything") is Other
    assert merged.filter("everything_else") is Everything
    assert merged.task("echo").name == "echo"


def test_a_name_registered_twice_names_both_plugins():
    class Clash:
        @staticmethod
        @hookimpl
        def register_tasks(register):
            register(Echo())

    with pytest.raises(CuratorError, match="task 'echo' is already registered by plugin"):
        registry_for([Plugin, Clash])


def test_a_misspelt_hook_is_caught():
    class Typo:
        @staticmethod
        @hookimpl
        def register_filter(register):
            pass

    with pytest.raises(Exception, match="unknown hook 'register_filter'"):
        registry_for([Typo])


def test_registering_something_that_is_not_a_filter_is_an_error():
    class Wrong:
        @staticmethod
        @hookimpl
        def register_filters(register):
            register(Echo)

    with pytest.raises(CuratorError, match="filter 'echo' is not a curator.Filter subclass"):
        registry_for([Wrong])


@pytest.mark.parametrize("obj", [DummyBackend(BackendOptions(model="m")), type("Loose", (), {"name": "loose"})], ids=["instance", "class"])
def test_registering_something_that_is_not_a_backend_class_is_an_error(obj):
    class Wrong:
        @staticmethod
        @hookimpl
        def register_backends(register):
            register(obj, name="loose")

    with pytest.raises(CuratorError, match="backend 'loose' is not a curator.Backend subclass"):
        registry_for([Wrong])
