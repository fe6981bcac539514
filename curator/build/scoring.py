"""The executor seam: what scoring one step asks of an executor, and the scoring both executors share.

An executor is handed a :class:`ScoringJob` (a step, the working copy and
the plan of rows the cache lacks) and yields :class:`ScoredRows` in any
order; the build stores them by row key, then gathers, fits, selects and
writes the same way whichever executor ran. A filter never knows which:
both call :func:`score_rows` on a batch of whole groups.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from curator.build.recorded_warnings import recorded_warnings
from curator.build.score_cache import KEY_COLUMNS
from curator.build.step_scores import ROW, StepPlan
from curator.build.working_copy import Prepared
from curator.errors import CuratorError, MissingDependency
from curator.filter import Filter, FilterContext, handed, undeclared_columns_named
from curator.progress import reporting_rows
from curator.task import Task


class ModelPool:
    """Models loaded by one process of a build, shared by every filter that asks for the same key."""

    def __init__(self) -> None:
        self._models: dict[tuple[Any, ...], Any] = {}

    def get(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        if key not in self._models:
            self._models[key] = load()
        return self._models[key]

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        self._models.clear()


@dataclass
class StepWork:
    """What scoring a step needs in any process: picklable, so Ray ships it to its workers."""

    step: str
    filter_name: str
    plugin: str
    filter: Filter
    task: Task
    base_dir: Path
    device: str | None

    def context(self, models: ModelPool) -> FilterContext:
        return FilterContext(task=self.task, base_dir=self.base_dir, models=models, device=self.device)


@dataclass
class ScoringJob:
    """One step to score: its work, and which rows of the working copy the cache lacks."""

    work: StepWork
    prepared: Prepared
    plan: StepPlan
    concurrency: int | None


@dataclass
class ScoredRows:
    """Scores of some rows: key columns and the filter's columns, with what scoring them said."""

    table: pa.Table
    unit: int
    """The working-copy batch the rows come from (all the rows of it the plan lists)."""
    warnings: list[list[str]] = field(default_factory=list)
    """``[category, message]`` of each warning raised while scoring, message naming the step."""
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class Executor(Protocol):
    name: str

    def score(self, job: ScoringJob, advance: Callable[[int], None]) -> Iterator[ScoredRows]:
        """Score the plan's rows; ``advance(n)`` as rows finish, ``plan.todo`` in all."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the executor."""
        ...

    def close(self) -> None: ...


def check_executor(name: str) -> None:
    """Fail before any work when the chosen executor's package is missing."""
    if name == "ray" and importlib.util.find_spec("ray") is None:
        raise MissingDependency("ray", "the ray executor", "ray")


def open_executor(name: str, address: str | None) -> Executor:
    if name == "ray":
        from curator.build.ray_executor import RayExecutor

        return RayExecutor(address)
    from curator.build.local import LocalExecutor

    return LocalExecutor()


def rows_to_score(batch: pa.RecordBatch, first_row: int, todo: pa.RecordBatch, filter: Filter | None = None
                  ) -> pa.RecordBatch:
    """The working-copy rows a plan lists for scoring, in order, with their key columns.

    Given the ``filter``, only the columns it is handed (:func:`~curator.filter.handed`) are taken.
    """
    positions = todo.column(ROW).to_numpy() - first_row
    every = len(positions) == batch.num_rows  # rows are listed in order, so these are all of them
    shown = batch if filter is None else handed(filter, batch)
    rows = shown if every else shown.take(pa.array(positions))
    return pa.RecordBatch.from_arrays([*rows.columns, *(todo.column(c) for c in KEY_COLUMNS)],
                                      names=[*rows.schema.names, *KEY_COLUMNS])


def score_rows(work: StepWork, unit: int, rows: pa.RecordBatch, context: FilterContext,
               advance: Callable[[int], None] | None = None) -> ScoredRows:
    """Run ``filter.score`` on whole groups (key columns hidden from it) and check what it returns."""
    filter = work.filter
    batch = rows.drop_columns(list(KEY_COLUMNS))
    shown = 0

    def report(count: int) -> None:
        nonlocal shown
        count = min(count, batch.num_rows - shown)  # a filter may score other texts too
        if count > 0 and advance is not None:
            advance(count)
            shown += count

    started = time.perf_counter()
    with recorded_warnings() as caught, reporting_rows(report), \
            undeclared_columns_named(filter, batch, f"filter '{work.filter_name}' ({work.plugin}): score"):
        columns = filter.score(batch, context)
    seconds = time.perf_counter() - started
    report(batch.num_rows - shown)
    arrays = [rows.column(c) for c in KEY_COLUMNS]
    for name in filter.columns:
        if name not in columns:
            raise CuratorError(f"filter '{work.filter_name}' ({work.plugin}) did not return column '{name}'")
        value = columns[name]
        array = value if isinstance(value, (pa.Array, pa.ChunkedArray)) else pa.array(value)
        if len(array) != batch.num_rows:
            raise CuratorError(
                f"filter '{work.filter_name}' ({work.plugin}) returned {len(array)} values "
                f"for column '{name}' on a batch of {batch.num_rows} rows"
            )
        arrays.append(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array)
    said = [[w.category.__name__, f"filter step '{work.step}': {w.message}"] for w in caught]
    table = pa.Table.from_arrays(arrays, names=[*KEY_COLUMNS, *filter.columns])
    return ScoredRows(table, unit, said, filter.describe(), seconds)
