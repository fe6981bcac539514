"""Planning a build: each step's filter built and checked before any step runs, and its cache found.

Everything a step needs that can be checked without the data is checked
here first (options, optional packages, declarations), so a missing
``torch`` fails in a second rather than after the steps before it have run;
the input's columns are checked once the working copy's first batch exists.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from curator.build.fingerprints import code_fingerprint, file_stamps
from curator.build.recipe import Recipe, Step
from curator.build.row_keys import schema_digest
from curator.build.score_cache import ScoreStore, cache_key
from curator.errors import CuratorError, MissingDependency
from curator.filter import SCORE_MEANINGS, Filter
from curator.plugins import Registry
from curator.task import Task

VERDICT_COLUMNS = ("keep", "weight", "dropped_by")
"""Columns the build adds to every row, after the steps' score columns."""


@dataclass
class PlannedStep:
    step: Step
    filter: Filter
    plugin: str
    distribution: str | None
    output_names: dict[str, str]
    """Public score column -> its name in the outputs (suffixed by a renamed step)."""
    store: ScoreStore = field(init=False)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def meaning(self) -> dict[str, str | None]:
        """Each output column's declared meaning, for the manifest (None: undeclared)."""
        return {out: self.filter.score_meaning.get(base) for base, out in self.output_names.items()}


def plan_steps(recipe: Recipe, registry: Registry) -> list[PlannedStep]:
    """Build every step's filter and check what needs no data: options, packages, declarations."""
    planned = []
    for step in recipe.steps:
        cls = registry.filter(step.filter)
        entry = registry.entry("filter", step.filter)
        check_dependencies(cls, step.name)
        instance = cls.from_options(step.options, step=step.name)
        suffix = "" if step.name == step.filter else f"_{step.name}"
        names = {c: f"{c}{suffix}" for c in instance.columns if not c.startswith("_")}
        _check_declarations(cls, step, entry.plugin, names)
        planned.append(PlannedStep(step, instance, entry.plugin, entry.distribution, names))
    return planned


def check_dependencies(cls: type[Filter], step: str) -> None:
    """The filter's optional packages are importable, else one line naming what installs them."""
    for module in cls.dependencies:
        if importlib.util.find_spec(module) is None:
            raise MissingDependency(module, f"filter step '{step}'", cls.extra)


def _check_declarations(cls: type[Filter], step: Step, plugin: str, names: dict[str, str]) -> None:
    where = f"filter '{step.filter}' ({plugin})"
    if cls.scope not in ("row", "group"):
        raise CuratorError(f"{where}: scope must be 'row' or 'group', not {cls.scope!r}")
    for column, meaning in cls.score_meaning.items():
        if column not in names:
            raise CuratorError(f"{where}: score_meaning names '{column}', which is not one of its public columns")
        if meaning not in SCORE_MEANINGS:
            raise CuratorError(
                f"{where}: score_meaning of '{column}' must be one of {', '.join(SCORE_MEANINGS)}, not {meaning!r}"
            )


def bind_inputs(steps: list[PlannedStep], schema: pa.Schema, source: Path, task: Task, recipe: Recipe) -> None:
    """Check each step's input and output columns against the working copy's, and open its score cache."""
    taken = set(schema.names)
    written = [c for c in VERDICT_COLUMNS if c in taken]
    if written:
        raise CuratorError(
            f"{source}: has a column '{written[0]}', which the build writes "
            f"({', '.join(VERDICT_COLUMNS)}); drop or rename it in the input (a curated file's columns, say)"
        )
    task_code = code_fingerprint(type(task))
    for planned in steps:
        step, instance = planned.step, planned.filter
        missing = [c for c in instance.requires if c not in schema.names]
        if missing:
            raise CuratorError(
                f"filter step '{step.name}' needs input column '{missing[0]}', which {source} lacks"
            )
        for out in planned.output_names.values():
            if out in taken:
                raise CuratorError(
                    f"filter step '{step.name}' adds column '{out}', which already exists; give the step a 'name'"
                )
            taken.add(out)
        planned.store = ScoreStore(recipe.cache_dir(), step_cache_key(planned, schema_digest(schema), task, task_code,
                                                                     recipe.base_dir))


def step_cache_key(planned: PlannedStep, columns: str, task: Task, task_code: str, base_dir: Path) -> str:
    """Everything but the rows that decides a step's scores; see :mod:`curator.build.score_cache`."""
    instance = planned.filter
    options = instance.score_options()
    return cache_key(
        planned.step.filter, planned.distribution, options, file_stamps(options, base_dir),
        code_fingerprint(type(instance)), instance.scope, list(instance.columns),
        task.name, task_code, columns,
    )
