"""The one-pass build: each batch through every step and into the output files while the next is read.

A step's ``select`` is given what ``fit`` drew from the scores of every row
that reached the step, so in general each step needs a pass of its own
(:mod:`curator.build.run`): score all, gather, fit, select; then the outputs.
But many fits draw nothing from the scores (a fixed threshold, a vote): when
no step's does, and no step runs a model, all of that is one pass over the
input, as it is read, answered and hashed, and no working copy is kept (a
copy another build left is read instead of the input). Each batch is looked
up in every step's cache, scored where the cache lacks it, selected and split
into its files' rows by a worker thread, while the input's own workers answer
and hash the next batches (Arrow and numpy release the GIL; the two pools share
the CPUs); the build's own thread queues the new scores for storing and the
rows for the writers, in order. Whether a fit draws on the scores is
found by asking it: it is first called with scores that stop it at the first
read (:func:`fit_without_scores`).

The cache (the same parts, keyed the same way), the outputs and the manifest
are those the passes give; only the local executor runs it. One case sends
the build back to the passes: a score column that held only nulls in the
first batches written (typed ``null``) and values later, which a file
already begun cannot take (:class:`TypesChanged`). The scores stored by then
are found in the cache.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from curator.background import Worker, mapped, shared_workers
from curator.build.output import OutputWriter, StepRows, output_batch
from curator.build.phases import Phases
from curator.build.planning import PlannedStep
from curator.build.recipe import Recipe
from curator.build.row_keys import group_scope_keys
from curator.build.score_cache import KEY_COLUMNS, key_columns, parts_in_order
from curator.build.scoring import ModelPool, ScoredRows, StepWork, rows_to_score, score_rows
from curator.build.selection import BuildState, select_rows
from curator.build.step_scores import ROW
from curator.build.working_copy import FreshBatch, Prepared
from curator.filter import Filter, FilterContext, handed
from curator.progress import progress_bar
from curator.task import Task


class TypesChanged(Exception):
    """A later batch's score column has values where the files began with an all-null (``null``) column."""


class _ScoresNeeded(BaseException):
    """Raised at a fit's first read of the scores; not an ``Exception``, so a fit's ``except Exception`` lets it by."""


class _NoScores:
    """Scores that stop the fit reading them (the :class:`~curator.filter.ScoreColumns` protocol)."""

    @property
    def num_rows(self) -> int:
        raise _ScoresNeeded

    def column(self, name: str) -> pa.ChunkedArray:
        raise _ScoresNeeded

    def numpy(self, name: str) -> np.ndarray:
        raise _ScoresNeeded


def fit_without_scores(filter: Filter) -> dict[str, Any] | None:
    """What ``filter.fit`` returns without reading a score, so for any rows; None where it reads them.

    A fit that fails without its scores in another way (it looks at what
    ``score`` learnt, say) is left to the passes too.
    """
    try:
        return filter.fit(_NoScores())
    except (_ScoresNeeded, Exception):
        return None


def one_pass_stats(steps: list[PlannedStep], executor: str) -> list[dict[str, Any]] | None:
    """Each step's statistics, when the build can run in one pass (see the module docstring); else None."""
    if executor != "local" or any(planned.filter.uses_model for planned in steps):
        return None
    stats = []
    for planned in steps:
        fitted = fit_without_scores(planned.filter)
        if fitted is None:
            return None
        stats.append(fitted)
    return stats


@dataclass
class _StepRows:
    """What one step did to one batch."""

    rows: np.ndarray
    """The reached rows' places in the batch."""
    scores: pa.Table
    """Their score columns, in order."""
    parts: np.ndarray
    """The cache part each reached row's scores came from; -1: scored now (``new``)."""
    new: ScoredRows | None
    select_seconds: float


@dataclass
class _BatchDone:
    index: int
    first_row: int
    verdict: BuildState
    steps: list[_StepRows | None]
    out: pa.RecordBatch
    files: dict[str, pa.RecordBatch]


class OnePass:
    """The one pass of a build: over the input as it is read (:meth:`stream`), or over a cached copy (:meth:`over`).

    ``bind`` opens the steps' caches for the input's columns (as the task
    answered them), once they are known. After the pass, :attr:`verdicts` holds what every row
    came to, or :attr:`types_changed` says the passes must write the outputs.
    """

    def __init__(self, steps: list[PlannedStep], stats: list[dict[str, Any]], task: Task, recipe: Recipe,
                 writer: OutputWriter, phases: Phases, bind: Callable[[pa.Schema], None],
                 relay: Callable[[list[list[str]]], None], progress: bool | None, input_rows: int | None) -> None:
        self.steps, self.stats, self.writer, self.phases = steps, stats, writer, phases
        self.bind, self.relay, self.progress, self.input_rows = bind, relay, progress, input_rows
        self.works = [StepWork(p.step.name, p.step.filter, p.plugin, p.filter, task, recipe.base_dir, recipe.device)
                      for p in steps]
        self.context = FilterContext(task=task, base_dir=recipe.base_dir, models=ModelPool(), device=recipe.device)
        self.layout = [(p.step.name, p.output_names) for p in steps]
        self.verdicts: BuildState | None = None
        self.types_changed = False

    def stream(self, fresh: Iterator[FreshBatch]) -> None:
        """The pass over the input, each batch as soon as it is answered and hashed (a :data:`Stream`)."""
        first = next(fresh, None)
        if first is not None:  # no rows: making the copy says so
            self.bind(first.batch.schema)
            self._run(itertools.chain([first], fresh), self.input_rows)

    def over(self, prepared: Prepared) -> None:
        """The pass over a working copy another build made."""
        self.bind(prepared.schema)
        batches = (FreshBatch(index, first_row, batch, hashes, groups) for (index, first_row, batch), (*_, hashes, groups)
                   in zip(self.phases.timed("read copy", prepared.batches()), prepared.row_keys()))
        self._run(batches, prepared.num_rows)

    def _run(self, batches: Iterator[FreshBatch], total: int | None) -> None:
        label = " → ".join(p.step.name for p in self.steps) or "writing"
        try:
            with progress_bar(total, label, enabled=self.progress) as bar, self.writer:
                self.verdicts = self._through(batches, bar.update)
                waiting = time.perf_counter()  # for the writer's last batches, as the block ends
            self.phases.add("write outputs", time.perf_counter() - waiting, self.writer.cpu)
        except TypesChanged:
            self.verdicts, self.types_changed = None, True

    def _through(self, batches: Iterator[FreshBatch], advance: Callable[[int], None]) -> BuildState:
        """Every batch through the steps and into the writer; each step's report filled in."""
        started = time.perf_counter()
        for planned, stats in zip(self.steps, self.stats):
            planned.store.freeze()
            planned.report.update(rows_in=0, rows_scored=0, score_seconds=0.0, select_seconds=0.0, fit_seconds=0.0,
                                  stats=stats, warnings=[])
        used: list[dict[int, None]] = [{} for _ in self.steps]
        facts: list[dict[str, Any]] = [{} for _ in self.steps]
        verdicts: list[BuildState] = []
        # new scores are stored by a thread of their own, in order, so each part's number is known when queued
        storing = Worker("cache")
        next_part = [planned.store.num_parts for planned in self.steps]
        with storing:
            self._each_batch(batches, advance, storing, next_part, used, facts, verdicts)
        self.phases.add("cache", 0.0, storing.cpu)
        assert next_part == [planned.store.num_parts for planned in self.steps]
        wall = time.perf_counter() - started
        for planned, learnt, in_order in zip(self.steps, facts, used):
            report = planned.report
            report["wall_seconds"] = wall
            if learnt:
                planned.store.record_facts(learnt)
            report["cached"] = report["rows_scored"] == 0
            report["facts"] = planned.store.facts()
            report["warnings"] = [message for _, message in planned.store.warnings_of(np.array(list(in_order)))]
        return BuildState.joined(verdicts)

    def _each_batch(self, batches: Iterator[FreshBatch], advance: Callable[[int], None], storing: Worker,
                    next_part: list[int], used: list[dict[int, None]], facts: list[dict[str, Any]],
                    verdicts: list[BuildState]) -> None:
        """The build's thread, batch by batch in order: the reports, the new scores queued, the rows written."""
        # the input's answering and hashing is the other pool of this pipeline (see ``prepare``)
        for done in self.phases.timed("score", mapped(self._through_steps, batches, workers=shared_workers(2))):
            verdicts.append(done.verdict)
            for position, (planned, did) in enumerate(zip(self.steps, done.steps)):
                if did is None:
                    continue
                report = planned.report
                report["rows_in"] += len(did.rows)
                report["select_seconds"] += did.select_seconds
                parts = did.parts
                if did.new is not None:
                    with self.phases.timing("cache"):
                        storing.submit(planned.store.append, did.new.table, did.new.warnings)
                    parts = np.where(parts < 0, next_part[position], parts)
                    next_part[position] += 1
                    self.relay(did.new.warnings)
                    report["rows_scored"] += did.new.table.num_rows
                    report["score_seconds"] += did.new.seconds
                    facts[position] = did.new.facts or facts[position]
                used[position].update(dict.fromkeys(parts_in_order(parts)))
            with self.phases.timing("write outputs"):
                self._write(done)
            advance(len(done.verdict.reach))

    def _write(self, done: _BatchDone) -> None:
        """The batch's rows to their files, cast to the types the files began with (an all-null column's)."""
        out, files, schema = done.out, done.files, self.writer.schema
        if schema is not None and out.schema != schema:
            try:
                out, files = out.cast(schema), {name: rows.cast(schema) for name, rows in files.items()}
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise TypesChanged from None
        self.writer.write(out, files)

    def _through_steps(self, fresh: FreshBatch) -> _BatchDone:
        """One batch through every step (in a worker thread): cache, score, select; then split for the files."""
        index, first_row, batch, hashes, groups = fresh.index, fresh.first_row, fresh.batch, fresh.hashes, fresh.groups
        assert hashes is not None, "a one-pass build hashes its input"
        n = batch.num_rows
        verdict = BuildState.rows(n)
        did: list[_StepRows | None] = []
        for position, planned in enumerate(self.steps):
            rows = np.flatnonzero(verdict.reach)
            if not len(rows):
                did.append(None)
                continue
            with self.phases.timing("score", wall=False):
                shown = handed(planned.filter, batch)
                reached = shown if len(rows) == n else shown.take(pa.array(rows))
            step = self._step(position, planned, index, reached, rows, hashes, groups)
            with self.phases.timing("select", wall=False):
                keep, scale, step.select_seconds = select_rows(planned, reached, step.scores, self.stats[position])
            verdict.apply(rows, keep, scale, position)
            did.append(step)
        with self.phases.timing("output", wall=False):
            scored: list[StepRows] = [
                (np.zeros(0, np.int64), None, {}) if step is None else
                (step.rows, step.scores, {c: step.scores.schema.field(c).type for c in step.scores.schema.names})
                for step in did
            ]
            out = output_batch(batch, self.layout, scored, verdict.reach, verdict.dropped_by, verdict.weight)
            files = self.writer.split(out)
        return _BatchDone(index, first_row, verdict, did, out, files)

    def _step(self, position: int, planned: PlannedStep, index: int, reached: pa.RecordBatch, rows: np.ndarray,
              hashes: np.ndarray, groups: np.ndarray) -> _StepRows:
        """A step's scores for the batch's reached rows (``reached``, at ``rows``): the cache's, the rest scored now."""
        with self.phases.timing("plan", wall=False):
            keys = group_scope_keys(hashes[rows], groups[rows]) if planned.filter.scope == "group" else hashes[rows]
            parts, part_rows = planned.store.lookup(keys)
        todo = np.flatnonzero(parts < 0)
        new = None
        if len(todo):
            listed = pa.RecordBatch.from_arrays([pa.array(todo, pa.int64()), *key_columns(keys[todo])],
                                                names=[ROW, *KEY_COLUMNS])  # places in ``reached``
            with self.phases.timing("score", wall=False):
                new = score_rows(self.works[position], index, rows_to_score(reached, 0, listed), self.context)
        with self.phases.timing("gather", wall=False):
            scores = _in_order(planned, parts, part_rows, todo, new)
        return _StepRows(rows, scores, parts, new, 0.0)


def _in_order(planned: PlannedStep, parts: np.ndarray, part_rows: np.ndarray, todo: np.ndarray,
              new: ScoredRows | None) -> pa.Table:
    """The score columns of the reached rows, in order: the cached ones' from the cache, the others' as scored."""
    columns = planned.filter.columns
    scored = None if new is None else new.table.select(list(columns))
    if len(todo) == len(parts):
        assert scored is not None
        return scored
    cached = np.flatnonzero(parts >= 0)
    found = planned.store.take(parts[cached], part_rows[cached], columns)
    if scored is None:
        return found
    order = np.empty(len(parts), dtype=np.int64)  # row i's place in [cached..., scored...]
    order[cached] = np.arange(len(cached))
    order[todo] = len(cached) + np.arange(len(todo))
    joined = pa.concat_tables([found, scored], promote_options="permissive")
    return joined.take(pa.array(order)).combine_chunks()
