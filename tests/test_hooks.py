"""Each hook is exercised by a test named after it, and documented with its signature."""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass

import pyarrow as pa
import pytest
from conftest import ROOT

from curator import CuratorError, Filter, Selection, Task, hookimpl, hookspecs
from curator.plugins import registry_for

HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]


def test_every_hook_has_a_test_and_is_documented():
    tests = {name for name in dir(sys.modules[__name__]) if name.startswith("test_hook_")}
    readme = (ROOT / "README.md").read_text()
    assert HOOKS == ["register_backends", "register_filters", "register_tasks"]
    for hook in HOOKS:
        assert f"test_hook_{hook}" in tests
        assert f"`{hook}(register)`" in readme


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


class DummyBackend:
    name = "dummy"


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

    with pytest.raises(CuratorError, match="is not a curator.Filter subclass"):
        registry_for([Wrong])
