"""Recipes: which input, which task, which filters in which order, where to write.

A recipe is YAML (read with the safe loader only). Paths in it are relative
to the recipe's folder, so a recipe and its data can move together; an
``input: hf:owner/name`` is a Hugging Face dataset (with ``config`` and
``split`` keys), and only an ``hf:./folder`` of its is a path.
``--set KEY=VALUE`` overrides any key by its dotted path, e.g.
``--set filters.1.ds_weight.keep_percent=50``; values are parsed as YAML.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curator.errors import CuratorError
from curator.hf import DatasetName, is_dataset_name
from curator.lm.loading import check_device
from curator.settings import read_yaml, read_yaml_file

TOP_LEVEL_KEYS = {"input", "task", "filters", "output", "regroup", "batch_rows", "cache", "rejected_by_step", "device",
                  "executor", "config", "split", "dataset", "name"}
EXECUTORS = ("local", "ray")
RECIPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A recipe's ``name``: what reports call it and the folder ``compare`` builds it in, so no spaces or slashes."""
DATASET_KEYS = ("save", "push", "private", "license")
BATCH_ROWS = 32_768
"""Rows per working-copy batch (then cut at a group's end). Each batch costs the build a few milliseconds of
Python on every pass, whatever its size, and a few batches are in memory at once (about 10 MB each of
GSM8K-like rows): at this size both are small."""


@dataclass(frozen=True)
class DatasetOutput:
    """The recipe's ``dataset`` key: the curated split as a Hugging Face dataset (:mod:`curator.build.dataset`).

    ``save`` writes ``OUTPUT/dataset`` (``save_to_disk``, with its card);
    ``push`` is a hub repo to push it to, ``private`` (the default) or not;
    ``license`` is the card's licence (default: the ``hf:`` input's).
    """

    save: bool = True
    push: str | None = None
    private: bool = True
    license: str | None = None


@dataclass(frozen=True)
class Step:
    """One filter in a recipe: its step name (unique), filter name and options.

    ``concurrency`` (a step key beside ``name``) is how many workers score the
    step under the Ray executor.
    """

    name: str
    filter: str
    options: dict[str, Any]
    concurrency: int | None = None


@dataclass
class Recipe:
    input: Path | DatasetName
    task: str
    steps: list[Step]
    output: Path | None
    base_dir: Path
    regroup: bool = False
    batch_rows: int = BATCH_ROWS
    cache: Path | None = None
    rejected_by_step: bool = False
    device: str | None = None
    executor: str = "local"
    name: str | None = None
    """The recipe's label in reports (``name:``); None: reports use the file's stem."""
    ray_address: str | None = None
    """The Ray cluster to join (``--ray-address``); else ``$RAY_ADDRESS``, else a local Ray is started."""
    dataset: DatasetOutput | None = None
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def cache_dir(self) -> Path:
        """Where scores are cached: the recipe's ``cache``, ``$CURATOR_CACHE``, or the user cache."""
        if self.cache is not None:
            return self.cache
        if env := os.environ.get("CURATOR_CACHE"):
            return Path(env)
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        return root / "rationale-curator"


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """Read a recipe file, apply ``KEY=VALUE`` overrides, and check it."""
    path = Path(path)
    raw = read_yaml_file(path, "recipe file")
    if not isinstance(raw, dict):
        raise CuratorError(f"{path}: a recipe is a mapping with keys input, task, filters, output")
    for override in overrides:
        apply_override(raw, override, path)
    return parse_recipe(raw, base_dir=path.resolve().parent, source=path)


def apply_override(raw: dict[str, Any], override: str, path: Path | str = "recipe") -> None:
    """Set a dotted key (list items by index) to a YAML-parsed value."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise CuratorError(f"--set {override!r}: expected KEY=VALUE")
    value = read_yaml(text, f"--set {key}", lines=False) if text else ""
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise CuratorError(f"--set {key}: '{part}' is not an index of the list at {'.'.join(parts[:i]) or 'top'}")
            index = int(part)
            if last:
                node[index] = value
            else:
                if isinstance(node[index], str):  # a bare filter name becomes a mapping
                    node[index] = {node[index]: {}}
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise CuratorError(f"--set {key}: '{'.'.join(parts[:i])}' is not a mapping or list in {path}")


def parse_recipe(raw: dict[str, Any], *, base_dir: Path, source: Path | None = None) -> Recipe:
    """Validate a recipe mapping; errors name the recipe file and key."""
    where = source or "recipe"
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        raise CuratorError(f"{where}: unknown key '{unknown[0]}' (keys: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    for key in ("input", "task"):
        if not raw.get(key):
            raise CuratorError(f"{where}: missing '{key}'")
    steps = parse_steps(raw.get("filters") or [], where)
    batch_rows = raw.get("batch_rows", BATCH_ROWS)
    if not isinstance(batch_rows, int) or batch_rows < 1:
        raise CuratorError(f"{where}: 'batch_rows' must be a positive integer")
    if raw.get("device"):
        check_device(str(raw["device"]), f"{where}: device")
    executor = raw.get("executor", "local")
    if executor not in EXECUTORS:
        raise CuratorError(f"{where}: 'executor' must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    name = raw.get("name")
    if name is not None and not (isinstance(name, str) and RECIPE_NAME.fullmatch(name)):
        raise CuratorError(
            f"{where}: 'name' must be 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit), got {name!r}"
        )

    def resolve(value: Any) -> Path | None:
        if value in (None, ""):
            return None
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else base_dir / p

    return Recipe(
        input=_input(raw, resolve, base_dir, where),
        task=str(raw["task"]),
        steps=steps,
        output=resolve(raw.get("output")),
        base_dir=base_dir,
        regroup=bool(raw.get("regroup", False)),
        batch_rows=batch_rows,
        cache=resolve(raw.get("cache")),
        rejected_by_step=bool(raw.get("rejected_by_step", False)),
        device=str(raw["device"]) if raw.get("device") else None,
        executor=executor,
        dataset=parse_dataset_output(raw.get("dataset"), where),
        name=name,
        source=source,
        raw=raw,
    )


def _input(raw: dict[str, Any], resolve: Callable[[Any], Path | None], base_dir: Path,
           where: Path | str) -> Path | DatasetName:
    """A path relative to the recipe, or an ``hf:`` dataset with the recipe's ``config`` and ``split``."""
    config, split = (None if raw.get(key) is None else str(raw[key]) for key in ("config", "split"))
    if is_dataset_name(str(raw["input"])):
        return DatasetName.parse(str(raw["input"]), config, split).resolved(base_dir)
    if config is not None or split is not None:
        raise CuratorError(f"{where}: 'config' and 'split' choose a Hugging Face dataset's config and split "
                           f"(input: hf:NAME), not a file's")
    return resolve(raw["input"])  # type: ignore[return-value]


def parse_dataset_output(value: Any, where: Path | str) -> DatasetOutput | None:
    """``dataset: true`` (save it) or ``dataset: {save, push, private, license}``."""
    if value is None or value is False:
        return None
    if value is True:
        return DatasetOutput()
    if not isinstance(value, dict):
        raise CuratorError(f"{where}: 'dataset' must be true or a mapping with keys {', '.join(DATASET_KEYS)}")
    unknown = sorted(set(value) - set(DATASET_KEYS))
    if unknown:
        raise CuratorError(f"{where}: dataset: unknown key '{unknown[0]}' (keys: {', '.join(DATASET_KEYS)})")
    for key in ("save", "private"):
        if not isinstance(value.get(key, True), bool):
            raise CuratorError(f"{where}: dataset: '{key}' must be true or false")
    push = value.get("push")
    if push is not None and (not isinstance(push, str) or push.count("/") != 1 or push.startswith("/")
                             or push.endswith("/")):
        raise CuratorError(f"{where}: dataset: 'push' must be a hub repo 'owner/name', got {push!r}")
    output = DatasetOutput(save=value.get("save", True), push=push, private=value.get("private", True),
                           license=None if value.get("license") is None else str(value["license"]))
    if not output.save and output.push is None:
        raise CuratorError(f"{where}: dataset: nothing to do (save is false and there is no push)")
    return output


def parse_steps(items: Any, where: Path | str) -> list[Step]:
    """``- name`` or ``- name: {options}``; an option ``name`` renames the step."""
    if not isinstance(items, list):
        raise CuratorError(f"{where}: 'filters' must be a list")
    steps: list[Step] = []
    for position, item in enumerate(items):
        options: dict[str, Any]
        if isinstance(item, str):
            filter_name, options = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            filter_name, options = next(iter(item.items()))
            if not isinstance(options, dict | None):
                raise CuratorError(
                    f"{where}: filters[{position}] ({filter_name}): options must be a mapping "
                    f"(option: value), got {type(options).__name__}"
                )
            options = dict(options or {})
        else:
            raise CuratorError(f"{where}: filters[{position}] must be 'name' or 'name: {{options}}'")
        step_name = str(options.pop("name", filter_name))
        if any(s.name == step_name for s in steps):
            raise CuratorError(
                f"{where}: filters[{position}]: step name '{step_name}' is used twice; "
                f"give each step its own 'name'"
            )
        concurrency = options.pop("concurrency", None)
        if concurrency is not None and (not isinstance(concurrency, int) or isinstance(concurrency, bool)
                                        or concurrency < 1):
            raise CuratorError(f"{where}: filters[{position}] ({step_name}): 'concurrency' must be a positive integer")
        steps.append(Step(step_name, str(filter_name), options, concurrency))
    return steps
