"""The build: stream the working copy through the recipe's filters and write the split.

One pass per step plus one: pass ``k`` applies step ``k-1``'s selection (its
statistics were fitted after the previous pass), scores step ``k`` on the rows
that still reach it, and the last pass writes the outputs. State between
passes is a few bytes per row (reach mask, dropping step, weight), so memory
does not grow with the text in the input.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curator.build.score_cache import ROW, CachedScores, StepCache, cache_key, file_stamps
from curator.errors import CuratorError
from curator.filter import Filter, FilterContext, Selection
from curator.io import Source
from curator.outputs import package_versions
from curator.plugins import Registry, get_registry
from curator.build.working_copy import Prepared, prepare
from curator.progress import progress_bar, reporting_rows
from curator.build.recipe import Recipe, Step
from curator.build.output import OutputWriter


class ModelPool:
    """Models loaded during one build, shared by every filter that asks for the same key."""

    def __init__(self) -> None:
        self._models: dict[tuple[Any, ...], Any] = {}

    def get(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        if key not in self._models:
            self._models[key] = load()
        return self._models[key]

    def clear(self) -> None:
        self._models.clear()


@dataclass
class PlannedStep:
    step: Step
    filter: Filter
    plugin: str
    distribution: str | None
    cache: StepCache
    output_names: dict[str, str]
    report: dict[str, Any] = field(default_factory=dict)

    def public_columns(self) -> list[str]:
        return [c for c in self.filter.columns if not c.startswith("_")]


@dataclass
class BuildResult:
    output_dir: Path
    manifest: dict[str, Any]


def plan_steps(recipe: Recipe, prepared: Prepared, registry: Registry) -> list[PlannedStep]:
    """Build the filters, check their inputs and outputs, and key their caches."""
    planned: list[PlannedStep] = []
    chain: list[Any] = []
    taken = set(prepared.schema.names)
    for step in recipe.steps:
        cls = registry.filter(step.filter)
        entry = registry.entries["filter"][step.filter]
        instance = cls.from_options(step.options, step=step.name)
        missing = [c for c in instance.requires if c not in prepared.schema.names]
        if missing:
            raise CuratorError(
                f"filter step '{step.name}' needs input column '{missing[0]}', which {prepared.source.path} lacks"
            )
        suffix = "" if step.name == step.filter else f"_{step.name}"
        names = {c: f"{c}{suffix}" for c in instance.columns if not c.startswith("_")}
        for out in names.values():
            if out in taken:
                raise CuratorError(
                    f"filter step '{step.name}' adds column '{out}', which already exists; give the step a 'name'"
                )
            taken.add(out)
        stamps = file_stamps(instance.score_options(), recipe.base_dir)
        key = cache_key(prepared.fingerprint, recipe.task, recipe.batch_rows, recipe.regroup, chain,
                        step.filter, entry.distribution, instance.score_options(), stamps)
        planned.append(PlannedStep(step, instance, entry.plugin, entry.distribution,
                                   StepCache(recipe.cache_dir(), key), names))
        chain.append([step.filter, entry.distribution, instance.options(), stamps])
    return planned


class _BuildState:
    """Per-row state between passes: who still reaches, who dropped them, their weight."""

    def __init__(self, num_rows: int) -> None:
        self.reach = np.ones(num_rows, dtype=bool)
        self.dropped_by = np.full(num_rows, -1, dtype=np.int16)
        self.weight = np.ones(num_rows, dtype=np.float32)


def run_build(
    recipe: Recipe,
    *,
    output_dir: Path | None = None,
    progress: bool | None = None,
    registry: Registry | None = None,
) -> BuildResult:
    """Run a recipe end to end; see the module docstring for the passes."""
    started = time.time()
    registry = registry or get_registry()
    output_dir = output_dir or recipe.output
    if output_dir is None:
        raise CuratorError(f"{recipe.source or 'recipe'}: no 'output' given (set it, or pass --output)")
    task = registry.task(recipe.task)
    source = Source.open(recipe.input)
    cache_root = recipe.cache_dir()
    prepared = prepare(source, task, cache_root, batch_rows=recipe.batch_rows, regroup=recipe.regroup)
    steps = plan_steps(recipe, prepared, registry)
    writer = OutputWriter(output_dir, [s.step.name for s in steps], per_step=recipe.rejected_by_step)
    context = FilterContext(task=task, base_dir=recipe.base_dir, models=ModelPool(), device=recipe.device)
    state = _BuildState(prepared.num_rows)
    stats: list[dict[str, Any]] = []
    try:
        for k in range(len(steps) + 1):
            selecting = steps[k - 1] if k else None
            scoring = steps[k] if k < len(steps) else None
            label = scoring.step.name if scoring else "writing"
            if scoring is None:
                types = _score_types(steps, prepared.num_batches)
            with progress_bar(prepared.num_rows, label, enabled=progress) as bar:
                for index, first_row, batch in prepared.batches():
                    if selecting is not None:
                        _select(selecting, k - 1, index, first_row, batch, stats[k - 1], state)
                    reported = 0
                    if scoring is not None:
                        reported = _score(scoring, index, first_row, batch, state, context, bar)
                    else:
                        writer.write(_output_batch(batch, index, first_row, steps, types, state))
                    bar.update(batch.num_rows - reported)
            if scoring is not None:
                stats.append(_fit(scoring, prepared, state))
    finally:
        for planned in steps:
            planned.filter.close()
        context.models.clear()
    manifest = _manifest(recipe, prepared, steps, state, started)
    writer.finish(manifest)
    return BuildResult(output_dir, manifest)


def _score(planned: PlannedStep, index: int, first_row: int, batch: pa.RecordBatch,
           state: _BuildState, context: FilterContext, bar: Any) -> int:
    """Score the batch's reached rows unless cached; returns the rows already shown on ``bar``."""
    if planned.cache.complete or planned.cache.has(index):
        return 0
    reach = state.reach[first_row : first_row + batch.num_rows]
    rows = np.flatnonzero(reach) + first_row
    reached = batch.filter(pa.array(reach))
    shown = 0

    def advance(count: int) -> None:
        nonlocal shown
        count = min(count, reached.num_rows - shown)  # a filter may score other texts too
        if count > 0:
            bar.update(count)
            shown += count

    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, reporting_rows(advance):
        warnings.simplefilter("always")
        columns = planned.filter.score(reached, context) if reached.num_rows else {}
    planned.report["score_seconds"] = planned.report.get("score_seconds", 0.0) + time.perf_counter() - started
    _relay_warnings(planned, caught)
    arrays = [pa.array(rows, pa.int64())]
    for name in planned.filter.columns:
        if reached.num_rows and name not in columns:
            raise CuratorError(f"filter '{planned.step.filter}' ({planned.plugin}) did not return column '{name}'")
        value = columns.get(name, pa.array([], pa.null()))
        array = value if isinstance(value, (pa.Array, pa.ChunkedArray)) else pa.array(value)
        if len(array) != reached.num_rows:
            raise CuratorError(
                f"filter '{planned.step.filter}' ({planned.plugin}) returned {len(array)} values "
                f"for column '{name}' on a batch of {reached.num_rows} rows"
            )
        arrays.append(array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array)
    planned.cache.write(index, pa.Table.from_arrays(arrays, names=[ROW, *planned.filter.columns]))
    return shown


def _relay_warnings(planned: PlannedStep, caught: list[warnings.WarningMessage]) -> None:
    """Re-issue a filter's warnings under its step name, and keep them for the manifest."""
    for warning in caught:
        message = f"filter step '{planned.step.name}': {warning.message}"
        planned.report.setdefault("warnings", []).append(message)
        warnings.warn_explicit(message, warning.category, "curator", 0)


def _fit(planned: PlannedStep, prepared: Prepared, state: _BuildState) -> dict[str, Any]:
    if not planned.cache.complete:
        planned.cache.finish({
            "facts": planned.filter.describe(),
            "score_seconds": planned.report.get("score_seconds", 0.0),
            "warnings": planned.report.get("warnings", []),
        })
        planned.report["cached"] = False
    else:
        planned.report["cached"] = True
    started = time.perf_counter()
    stats = planned.filter.fit(CachedScores(planned.cache, prepared.num_batches))
    planned.report["fit_seconds"] = time.perf_counter() - started
    planned.report["rows_in"] = int(state.reach.sum())
    planned.report["stats"] = stats
    meta = planned.cache.meta()
    planned.report["facts"] = meta.get("facts", {})
    planned.report["warnings"] = meta.get("warnings", [])
    return stats


def _select(planned: PlannedStep, position: int, index: int, first_row: int, batch: pa.RecordBatch,
            stats: dict[str, Any], state: _BuildState) -> None:
    end = first_row + batch.num_rows
    reach = state.reach[first_row:end]
    scores = planned.cache.read(index)
    rows = np.flatnonzero(reach) + first_row
    if scores.num_rows != len(rows) or not np.array_equal(scores.column(ROW).to_numpy(), rows):
        raise CuratorError(f"score cache {planned.cache.dir} does not match the input; delete it and re-run")
    if not len(rows):
        return
    reached = batch.filter(pa.array(reach))
    combined = pa.RecordBatch.from_arrays(
        [*reached.columns, *(scores.column(c).combine_chunks() for c in planned.filter.columns)],
        names=[*reached.schema.names, *planned.filter.columns],
    )
    started = time.perf_counter()
    selection = planned.filter.select(combined, stats)
    planned.report["select_seconds"] = planned.report.get("select_seconds", 0.0) + time.perf_counter() - started
    keep, weight = _check_selection(selection, len(rows), planned)
    dropped = rows[~keep]
    state.reach[dropped] = False
    state.dropped_by[dropped] = position
    if weight is not None:
        state.weight[rows] *= weight


def _check_selection(selection: Selection, n: int, planned: PlannedStep) -> tuple[np.ndarray, np.ndarray | None]:
    def as_numpy(values: Any, dtype: Any) -> np.ndarray:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if isinstance(values, pa.Array):
            values = values.fill_null(False if dtype is bool else np.nan).to_numpy(zero_copy_only=False)
        array = np.asarray(values, dtype=dtype)
        if array.shape != (n,):
            raise CuratorError(
                f"filter '{planned.step.filter}' ({planned.plugin}) selected {array.shape} values for {n} rows"
            )
        return array

    keep = as_numpy(selection.keep, bool)
    weight = None if selection.weight is None else as_numpy(selection.weight, np.float32)
    return keep, weight


def _score_types(steps: list[PlannedStep], num_batches: int) -> list[dict[str, pa.DataType]]:
    """Each step's public column types, from its first part that has rows (empty parts are untyped)."""
    types = []
    for planned in steps:
        found: dict[str, pa.DataType] = {}
        for index in range(num_batches):
            scores = planned.cache.read(index)
            if scores.num_rows:
                found = {c: scores.schema.field(c).type for c in planned.output_names}
                break
        types.append({c: found.get(c, pa.null()) for c in planned.output_names})
    return types


def _output_batch(batch: pa.RecordBatch, index: int, first_row: int, steps: list[PlannedStep],
                  types: list[dict[str, pa.DataType]], state: _BuildState) -> pa.RecordBatch:
    """The batch with every step's public score columns (null where not reached) and the verdict."""
    n = batch.num_rows
    names, arrays = list(batch.schema.names), list(batch.columns)
    for planned, step_types in zip(steps, types):
        scores = planned.cache.read(index)
        positions = scores.column(ROW).to_numpy() - first_row
        take = np.zeros(n, dtype=np.int64)
        take[positions] = np.arange(len(positions))
        missing = np.ones(n, dtype=bool)
        missing[positions] = False
        indices = pa.array(take, mask=missing)
        for base, out in planned.output_names.items():
            column = scores.column(base).combine_chunks().cast(step_types[base])
            arrays.append(column.take(indices) if len(column) else pa.nulls(n, step_types[base]))
            names.append(out)
    rows = slice(first_row, first_row + n)
    dropped = state.dropped_by[rows]
    step_names = pa.array([p.step.name for p in steps] or [""], pa.string())
    dropped_by = pa.DictionaryArray.from_arrays(pa.array(dropped, mask=dropped < 0), step_names)
    arrays += [pa.array(state.reach[rows]), pa.array(state.weight[rows]), dropped_by.cast(pa.string())]
    names += ["keep", "weight", "dropped_by"]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _manifest(recipe: Recipe, prepared: Prepared, steps: list[PlannedStep], state: _BuildState,
              started: float) -> dict[str, Any]:
    kept = int(state.reach.sum())
    step_reports = []
    for position, planned in enumerate(steps):
        report = planned.report
        rows_in = report.get("rows_in", 0)
        dropped = int((state.dropped_by == position).sum())
        step_reports.append({
            "step": planned.step.name,
            "filter": planned.step.filter,
            "plugin": planned.plugin,
            "distribution": planned.distribution,
            "options": planned.filter.options(),
            "columns": list(planned.output_names.values()),
            "rows_in": rows_in,
            "rows_kept": rows_in - dropped,
            "rows_dropped": dropped,
            "stats": report.get("stats", {}),
            "facts": report.get("facts", {}),
            "warnings": report.get("warnings", []),
            "cached": report.get("cached", False),
            "cache": str(planned.cache.dir),
            "seconds": {k: round(report.get(f"{k}_seconds", 0.0), 4) for k in ("score", "fit", "select")},
        })
    return {
        "command": "build",
        "recipe": recipe.raw,
        "recipe_path": str(recipe.source) if recipe.source else None,
        "task": recipe.task,
        "input": {
            "path": str(prepared.source.path),
            "format": prepared.source.format,
            "fingerprint": prepared.fingerprint,
            "rows": prepared.num_rows,
            "groups": prepared.num_groups,
            "answer_filled_by_task": prepared.filled_answer,
        },
        "versions": package_versions(),
        "steps": step_reports,
        "rows_in": prepared.num_rows,
        "rows_out": kept,
        "rows_rejected": prepared.num_rows - kept,
        "seconds": round(time.time() - started, 3),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
