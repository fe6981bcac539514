"""Command settings declared once: a config dataclass field says what its option means.

Each command's config (:class:`curator.generate.GenerateConfig`,
:class:`curator.train.TrainConfig`, :class:`curator.evaluate.EvalConfig`,
:class:`curator.report.CompareConfig`) declares its fields with
:func:`setting`; the help text, choices and bounds travel in the field's
metadata, so the command line (:mod:`curator.cli.options`) is derived from
the config instead of listing every option again, and :func:`check_bounds`
holds API callers to the bounds the command line enforces. This module
imports no click: configs stay usable without the CLI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from curator.errors import CuratorError


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    flag: str | None = None,
    choices: Sequence[str] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    metavar: str | None = None,
    argument: bool = False,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A config field with its command-line option.

    ``flag`` overrides the option's spelling (``--set``, ``--chat/--completions``);
    ``minimum``/``maximum`` are inclusive bounds and ``above`` an exclusive
    lower one; ``argument`` makes it a positional argument (a tuple field
    takes any number).
    """
    metadata = {
        "help": help, "flag": flag, "choices": None if choices is None else tuple(choices),
        "minimum": minimum, "maximum": maximum, "above": above, "metavar": metavar, "argument": argument,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def described_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of a config dataclass that are command-line settings, in order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def check_bounds(config: Any, command: str) -> None:
    """Choices and bounds of every setting, as one line naming the command and the setting."""
    for spec in described_fields(type(config)):
        value, meta = getattr(config, spec.name), spec.metadata
        if value is None or isinstance(value, (bool, tuple, list)):
            continue
        if meta["choices"] is not None and value not in meta["choices"]:
            raise CuratorError(
                f"{command}: {spec.name} must be one of {', '.join(meta['choices'])}, got {value!r}"
            )
        if meta["minimum"] is not None and value < meta["minimum"]:
            raise CuratorError(f"{command}: {spec.name} must be at least {meta['minimum']}, got {value}")
        if meta["maximum"] is not None and value > meta["maximum"]:
            raise CuratorError(f"{command}: {spec.name} must be at most {meta['maximum']}, got {value}")
        if meta["above"] is not None and value <= meta["above"]:
            raise CuratorError(f"{command}: {spec.name} must be more than {meta['above']}, got {value}")


def read_yaml(text: str, where: str, *, lines: bool = True) -> Any:
    """YAML through the safe loader (tags such as ``!!python/`` are refused); an error names ``where`` and the line."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark and lines else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CuratorError(f"{where}{line}: invalid YAML ({' '.join(str(problem).split())})") from None


def read_yaml_file(path: Path, what: str) -> Any:
    """A YAML file (a recipe, a training config), which must be UTF-8 text."""
    if path.is_dir():
        raise CuratorError(f"{path}: a folder, not a {what}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CuratorError(f"{path}: no such {what}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CuratorError(f"{path}:{line}: not UTF-8 text (byte {data[exc.start]:#04x})") from None
    return read_yaml(text, str(path))
