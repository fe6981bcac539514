"""The build: plan, prepare, then per step find, score, gather, fit and select; write the split.

For each step in order: the rows that still reach it are keyed (by content,
see :mod:`curator.build.row_keys`) and looked up in its score cache; the
executor (local or Ray) scores only the rows the cache lacks, and the build
stores them by key; the scores of every reached row are then gathered in
working-copy order, ``fit`` runs once over them and ``select`` streams over
the batches. A last pass writes the outputs in input order. State between
passes is a few bytes per row (reach mask, dropping step, weight), so memory
does not grow with the text in the input. Where no step's ``fit`` reads its
scores and none runs a model, all of that is one pass over the input
instead (:mod:`curator.build.one_pass`), with the same outputs and cache.
"""

from __future__ import annotations

import builtins
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curator.background import imported_meanwhile, mapped
from curator.build.dataset import write_dataset
from curator.build.manifest import build_manifest
from curator.build.one_pass import OnePass, one_pass_stats
from curator.build.output import OutputWriter, output_batch
from curator.build.phases import Phases
from curator.build.planning import PlannedStep, bind_inputs, plan_steps
from curator.build.recipe import Recipe
from curator.build.row_keys import group_scope_keys
from curator.build.score_cache import parts_in_order
from curator.build.scoring import Executor, ScoringJob, StepWork, check_executor, open_executor
from curator.build.selection import BuildState, select_rows
from curator.build.step_scores import PART, PART_ROW, ROW, StepPlan, StepScores
from curator.build.working_copy import Prepared, prepare
from curator.errors import CuratorError
from curator.filter import handed
from curator.io import Source
from curator.outputs import cache_in_use, output_lock
from curator.plugins import Registry, get_registry
from curator.progress import progress_bar
from curator.task import Task


@dataclass
class BuildResult:
    output_dir: Path
    manifest: dict[str, Any]


def run_build(
    recipe: Recipe,
    *,
    output_dir: Path | None = None,
    progress: bool | None = None,
    registry: Registry | None = None,
) -> BuildResult:
    """Run a recipe end to end; see the module docstring for the passes."""
    started = time.time()
    # pyarrow imports pandas, where installed, at its first conversion of numpy or Python values: 0.2 s with the
    # GIL held, which would stall the first batch. Begun now, it overlaps the fingerprint and the first read.
    with imported_meanwhile("pandas"):
        registry = registry or get_registry()
        output_dir = output_dir or recipe.output
        if output_dir is None:
            raise CuratorError(f"{recipe.source or 'recipe'}: no 'output' given (set it, or pass --output)")
        writes = ["manifest.json", "curated.parquet", "rejected.parquet",
                  *(f"rejected-{step.name}.parquet" for step in recipe.steps if recipe.rejected_by_step)]
        local_input = recipe.input if isinstance(recipe.input, Path) else None  # hf:NAME is no file it overwrites
        with output_lock(output_dir, "build", inputs=[local_input, recipe.source], writes=writes), \
                cache_in_use(recipe.cache_dir()):
            return _build(recipe, output_dir, progress, registry, started)


def _build(recipe: Recipe, output_dir: Path, progress: bool | None, registry: Registry,
           started: float) -> BuildResult:
    task = registry.task(recipe.task)
    steps = plan_steps(recipe, registry)
    check_executor(recipe.executor)
    source = Source.open(recipe.input)
    phases = Phases()
    names = [s.step.name for s in steps]
    writer = OutputWriter(output_dir, names, per_step=recipe.rejected_by_step)

    def bind(schema: pa.Schema) -> None:
        bind_inputs(steps, schema, source.path, task, recipe)

    stats = one_pass_stats(steps, recipe.executor)
    one = None if stats is None else OnePass(steps, stats, task, recipe, writer, phases, bind, _relay, progress,
                                             source.num_rows() if progress is not False else None)
    try:
        prepared = prepare(source, task, recipe.cache_dir(), batch_rows=recipe.batch_rows, regroup=recipe.regroup,
                           phases=phases, stream=None if one is None else one.stream)
        if one is not None and not prepared.streamed:  # a working copy made before: the pass reads it
            one.over(prepared)
        if one is not None and one.verdicts is not None:
            state = one.verdicts
            described: dict[str, Any] = {"name": "local", "one_pass": True}
            for position, planned in enumerate(steps):
                _warn_if_all_dropped(planned, position, state)
        else:
            if one is None:
                bind(prepared.schema)
            else:  # a column typed null at first: the passes, which know each column's type before they write
                writer.discard()
                for planned in steps:
                    planned.report.clear()
                writer = OutputWriter(output_dir, names, per_step=recipe.rejected_by_step)
                if prepared.path is None:  # the one pass kept no copy; the passes read one per step
                    prepared = prepare(source, task, recipe.cache_dir(), batch_rows=recipe.batch_rows,
                                       regroup=recipe.regroup, phases=phases)
            state = BuildState.rows(prepared.num_rows)
            described = _passes(steps, prepared, state, writer, recipe, task, progress, phases)
    finally:
        for planned in steps:
            planned.filter.close()
    manifest = build_manifest(recipe, prepared, steps, state, described, started, phases.report())
    writer.finish(manifest)
    write_dataset(recipe, output_dir, manifest)
    return BuildResult(output_dir, manifest)


def _passes(steps: list[PlannedStep], prepared: Prepared, state: BuildState, writer: OutputWriter, recipe: Recipe,
            task: Task, progress: bool | None, phases: Phases) -> dict:
    """A pass per step (score, gather, fit, select), then one that writes the outputs; the executor's description."""
    scratch = writer.scratch()
    executor: Executor | None = None
    try:
        executor = open_executor(recipe.executor, recipe.ray_address)
        scores = [
            _run_step(position, planned, prepared, state, executor, scratch, recipe, task, progress, phases)
            for position, planned in enumerate(steps)
        ]
        with progress_bar(prepared.num_rows, "writing", enabled=progress) as bar, writer:
            layout = [(p.step.name, p.output_names) for p in steps]

            def finished(item: tuple[int, int, pa.RecordBatch]) -> tuple[pa.RecordBatch, dict[str, pa.RecordBatch]]:
                index, first_row, batch = item
                rows = slice(first_row, first_row + batch.num_rows)
                with phases.timing("output", wall=False):
                    scored = []
                    for step_scores in scores:
                        part = step_scores.read(index)
                        scored.append((part.column(ROW).to_numpy() - first_row, part, step_scores.types()))
                    out = output_batch(batch, layout, scored, state.reach[rows], state.dropped_by[rows],
                                       state.weight[rows])
                    return out, writer.split(out)

            for out, parts in phases.timed("output", mapped(finished, phases.timed("read copy", prepared.batches()))):
                with phases.timing("write outputs"):
                    writer.write(out, parts)
                bar.update(out.num_rows)
            waiting = time.perf_counter()  # for the writer's last batches, as the block ends
        phases.add("write outputs", time.perf_counter() - waiting, writer.cpu)
        return executor.describe()
    finally:
        if executor is not None:
            executor.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _run_step(position: int, planned: PlannedStep, prepared: Prepared, state: BuildState, executor: Executor,
              scratch: Path, recipe: Recipe, task: Task, progress: bool | None, phases: Phases) -> StepScores:
    with phases.timing("plan"):
        plan = _plan(planned, prepared, state, scratch / f"plan-{position}.arrow")
    work = StepWork(planned.step.name, planned.step.filter, planned.plugin, planned.filter, task, recipe.base_dir,
                    recipe.device)
    job = ScoringJob(work, prepared, plan, planned.step.concurrency)
    report = planned.report
    report.update(rows_in=plan.reached, rows_scored=0, score_seconds=0.0)
    facts: dict[str, Any] = {}
    new_parts: dict[int, int] = {}
    wall = time.perf_counter()
    with progress_bar(plan.reached, planned.step.name, enabled=progress) as bar:
        bar.update(plan.reached - plan.todo)
        if plan.todo:
            for scored in phases.timed("score", executor.score(job, bar.update)):
                with phases.timing("cache"):
                    new_parts[scored.unit] = planned.store.append(scored.table, scored.warnings)
                _relay(scored.warnings)
                report["rows_scored"] += scored.table.num_rows
                report["score_seconds"] += scored.seconds
                facts = scored.facts or facts
    report["wall_seconds"] = time.perf_counter() - wall
    if facts:
        planned.store.record_facts(facts)
    report["cached"] = report["rows_scored"] == 0
    report["facts"] = planned.store.facts()
    with phases.timing("gather"):
        gathered = _gather(planned, prepared, plan, new_parts, scratch / f"scores-{position}")
    started = time.perf_counter()
    stats = planned.filter.fit(gathered)
    report["fit_seconds"] = time.perf_counter() - started
    phases.add("fit", report["fit_seconds"], report["fit_seconds"])
    report["stats"] = stats
    _select(planned, position, prepared, plan, gathered, stats, state, phases)
    _warn_if_all_dropped(planned, position, state)
    return gathered


def _warn_if_all_dropped(planned: PlannedStep, position: int, state: BuildState) -> None:
    reached = planned.report["rows_in"]
    if reached and int((state.dropped_by == position).sum()) == reached:
        message = f"filter step '{planned.step.name}' dropped every row that reached it ({reached}→0)"
        planned.report["warnings"].append(message)
        _relay([["UserWarning", message]])


def _plan(planned: PlannedStep, prepared: Prepared, state: BuildState, path: Path) -> StepPlan:
    """Key the rows that reach the step and mark those whose scores the cache lacks."""
    plan = StepPlan(path)
    by_group = planned.filter.scope == "group"
    for index, first_row, hashes, groups in prepared.row_keys():
        reach = state.reach[first_row : first_row + len(groups)]
        rows = np.flatnonzero(reach)
        keys = group_scope_keys(hashes[rows], groups[rows]) if by_group else hashes[rows]
        part, row = planned.store.lookup(keys)
        plan.add(index, rows + first_row, keys, part, row)
    plan.close()
    return plan


def _gather(planned: PlannedStep, prepared: Prepared, plan: StepPlan, new_parts: dict[int, int],
            folder: Path) -> StepScores:
    """Every reached row's scores from the cache, in working-copy order, one part per batch.

    Cached rows are where the plan found them; the rows scored in this build
    are, in order, in the part stored for their batch. No index is built.
    """
    gathered = StepScores(folder, planned.filter.columns)
    used: dict[int, None] = {}
    for index in range(prepared.num_batches):
        located = plan.read(index)
        part = located.column(PART).to_numpy().copy()
        row = located.column(PART_ROW).to_numpy().copy()
        todo = part < 0
        if todo.any():
            if index not in new_parts or planned.store.rows_in(new_parts[index]) != int(todo.sum()):
                raise CuratorError(f"the executor did not return the scores of step '{planned.step.name}' for "
                                   f"every row of batch {index}; re-run the build")
            part[todo], row[todo] = new_parts[index], np.arange(int(todo.sum()), dtype=np.int32)
        scores = planned.store.take(part, row, planned.filter.columns)
        gathered.write(index, scores.add_column(0, ROW, located.column(ROW)))
        used.update(dict.fromkeys(parts_in_order(part)))
    planned.report["warnings"] = [message for _, message in planned.store.warnings_of(np.array(list(used)))]
    return gathered


def _select(planned: PlannedStep, position: int, prepared: Prepared, plan: StepPlan, gathered: StepScores,
            stats: dict[str, Any], state: BuildState, phases: Phases) -> None:
    """``select`` on every reached batch, two at once where there are two cores; the verdicts applied in order.

    A batch's rows are its own, so a batch selected while the verdict of the
    one before is applied reads a part of ``state`` no one is writing.
    """
    spent = 0.0
    select_started, read_before = time.perf_counter(), phases.seconds.get("read copy", 0.0)
    select_cpu, read_cpu_before = time.thread_time(), phases.cpu.get("read copy", 0.0)

    def selected(item: tuple[int, int, pa.RecordBatch]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
        index, first_row, batch = item
        reach = state.reach[first_row : first_row + batch.num_rows]
        rows = np.flatnonzero(reach) + first_row
        scores = gathered.read(index)
        if scores.num_rows != len(rows) or not np.array_equal(scores.column(ROW).to_numpy(), rows):
            raise CuratorError(f"the scores of step '{planned.step.name}' do not match the input; re-run the build")
        shown = handed(planned.filter, batch)
        reached = shown if len(rows) == batch.num_rows else shown.filter(pa.array(reach))
        keep, weight, seconds = select_rows(planned, reached, scores, stats)
        return rows, keep, weight, seconds

    batches = phases.timed("read copy", prepared.batches(plan.reached_batches))
    for rows, keep, weight, seconds in mapped(selected, batches):
        spent += seconds
        state.apply(rows, keep, weight, position)
    planned.report["select_seconds"] = spent
    reading, reading_cpu = phases.seconds["read copy"] - read_before, phases.cpu["read copy"] - read_cpu_before
    phases.add("select", time.perf_counter() - select_started - reading, time.thread_time() - select_cpu - reading_cpu)


def _relay(said: list[list[str]]) -> None:
    """Re-issue warnings raised while scoring (in this process or a worker) under the build's name."""
    for category, message in said:
        kind = getattr(builtins, category, None)
        kind = kind if isinstance(kind, type) and issubclass(kind, Warning) else UserWarning
        warnings.warn_explicit(message, kind, "curator", 0)

