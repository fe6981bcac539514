"""Selecting: a filter's ``select`` run on a batch with its scores, checked, and its verdict kept per row."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from curator.build.planning import PlannedStep
from curator.errors import CuratorError
from curator.filter import Selection, undeclared_columns_named


@dataclass
class BuildState:
    """Per row: whether it still reaches the next step, the step that dropped it (-1: none), its weight."""

    reach: np.ndarray
    dropped_by: np.ndarray
    weight: np.ndarray

    @classmethod
    def rows(cls, num_rows: int) -> BuildState:
        """Every row reaching the first step, dropped by none, of weight 1."""
        return cls(np.ones(num_rows, dtype=bool), np.full(num_rows, -1, dtype=np.int16),
                   np.ones(num_rows, dtype=np.float32))

    @classmethod
    def joined(cls, parts: list[BuildState]) -> BuildState:
        """The states of consecutive batches as one."""
        if not parts:
            return cls.rows(0)
        return cls(*(np.concatenate(arrays) for arrays in zip(*((p.reach, p.dropped_by, p.weight) for p in parts))))

    def apply(self, rows: np.ndarray, keep: np.ndarray, weight: np.ndarray | None, position: int) -> None:
        """Step ``position``'s verdict on ``rows`` (the rows that reached it): drop, and weight, them."""
        dropped = rows[~keep]
        self.reach[dropped] = False
        self.dropped_by[dropped] = position
        if weight is not None:
            self.weight[rows] *= weight


def check_selection(selection: Selection, n: int, planned: PlannedStep) -> tuple[np.ndarray, np.ndarray | None]:
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


def select_rows(planned: PlannedStep, reached: pa.RecordBatch, scores: pa.Table, stats: dict[str, Any]
                ) -> tuple[np.ndarray, np.ndarray | None, float]:
    """``select`` on the reached rows with their score columns: keep, weight (or None), and its seconds."""
    combined = pa.RecordBatch.from_arrays(
        [*reached.columns, *(scores.column(c).combine_chunks() for c in planned.filter.columns)],
        names=[*reached.schema.names, *planned.filter.columns],
    )
    started = time.perf_counter()
    with undeclared_columns_named(planned.filter, combined, f"filter '{planned.step.filter}' ({planned.plugin}): select"):
        selection = planned.filter.select(combined, stats)
    seconds = time.perf_counter() - started
    return (*check_selection(selection, reached.num_rows, planned), seconds)
