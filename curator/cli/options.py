"""Click parameters derived from a command's config dataclass (see :mod:`curator.settings`).

Every setting of the config becomes one option (or argument), named after
its field, with the field's help, choices, bounds and default, so a command
module lists no option twice and ``--help`` describes each one; options
without a default are marked required.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import click

from curator.settings import described_fields

F = TypeVar("F", bound=Callable[..., Any])


def config_options(cls: type, *, from_file: str | None = None) -> Callable[[F], F]:
    """Decorate a click command with a parameter per setting of ``cls``, in field order.

    ``from_file`` names the option of a file that may supply settings too
    (``--config``): then no option is required or defaulted by click, one not
    given arrives as None, and the help states the config's default instead.
    """
    hints = typing.get_type_hints(cls)
    params = [_parameter(spec, hints[spec.name], from_file) for spec in described_fields(cls)]

    def decorate(command: F) -> F:
        for param in reversed(params):
            command = param(command)
        return command

    return decorate


def _parameter(spec: dataclasses.Field[Any], hint: Any, from_file: str | None) -> Callable[[F], F]:
    meta = spec.metadata
    kind, optional = _unwrap(hint)
    sequence = typing.get_origin(kind) in (tuple, list)
    element = typing.get_args(kind)[0] if sequence else kind
    default = _default(spec)
    required = default is dataclasses.MISSING
    if meta["argument"]:
        return click.argument(spec.name, nargs=-1 if sequence else 1, required=required, type=_click_type(meta, element))
    flag = meta["flag"] or (f"--{spec.name.replace('_', '-')}")
    if element is bool and meta["flag"] is None:
        flag = f"{flag}/--no-{flag[2:]}"
    options: dict[str, Any] = {"help": meta["help"], "metavar": meta["metavar"], "multiple": sequence}
    if element is bool:
        if "/" not in flag:
            options["is_flag"] = True
    else:
        options["type"] = _click_type(meta, element)
    if from_file is not None:
        shown = f"required here or in {from_file}" if required else _shown(default)
        options.update(default=None, help=f"{meta['help']} [{shown}]" if shown else meta["help"])
        if sequence:
            options["callback"] = lambda ctx, param, value: list(value) or None
    else:
        options.update(required=required, show_default=_shown(default) is not None)
        if not required:
            options["default"] = default
    return click.option(flag, spec.name, **options)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _default(spec: dataclasses.Field[Any]) -> Any:
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


def _shown(default: Any) -> str | None:
    """The default as the help states it, or None where there is nothing worth stating."""
    if default is dataclasses.MISSING or default is None or default in ((), []):
        return None
    if isinstance(default, bool):
        return f"default: {'on' if default else 'off'}"
    return f"default: {default}"


def _click_type(meta: typing.Mapping[str, Any], element: Any) -> Any:
    if meta["choices"] is not None:
        return click.Choice(meta["choices"])
    low, high, above = meta["minimum"], meta["maximum"], meta["above"]
    if low is None and high is None and above is None:
        return {int: click.INT, float: click.FLOAT}.get(element, click.STRING)
    if element is int:
        return click.IntRange(min=low if above is None else above, max=high, min_open=above is not None)
    if element is float:
        return click.FloatRange(min=low if above is None else above, max=high, min_open=above is not None)
    return click.STRING
