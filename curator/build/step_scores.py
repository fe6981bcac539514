"""One build's view of a step, in the build's scratch folder: which rows reach it, and their scores.

:class:`StepPlan` lists, per working-copy batch, the rows that reach the step
with their keys and whether the cache lacks them: the executors score just
those. :class:`StepScores` then holds the scores of every reached row in
working-copy order, one part per batch, gathered from the cache: ``fit``,
``select`` and the output read them there, whichever executor scored them.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from curator.build.score_cache import KEY_COLUMNS, key_columns

ROW = "_row"
"""Absolute row number in the working copy."""
PART, PART_ROW = "_part", "_part_row"
"""Where the cache holds a reached row's scores; part -1: the row is to be scored."""
PLAN_SCHEMA = pa.schema([(ROW, pa.int64()), (KEY_COLUMNS[0], pa.uint64()), (KEY_COLUMNS[1], pa.uint64()),
                         (PART, pa.int32()), (PART_ROW, pa.int32())])


class StepPlan:
    """Reached rows, their keys and where their cached scores are, one record batch per working-copy batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reached = 0
        self.todo = 0
        self.todo_batches: list[int] = []
        self.reached_batches: list[int] = []
        self._writer: ipc.RecordBatchFileWriter | None = ipc.new_file(str(path), PLAN_SCHEMA)
        self._reader: ipc.RecordBatchFileReader | None = None

    @classmethod
    def reader(cls, path: Path) -> StepPlan:
        """A finished plan opened for reading only (in another process)."""
        plan = cls.__new__(cls)
        plan.path, plan._writer, plan._reader = path, None, None
        return plan

    def add(self, index: int, rows: np.ndarray, keys: np.ndarray, part: np.ndarray, part_row: np.ndarray) -> None:
        assert self._writer is not None
        columns = [pa.array(rows, pa.int64()), *key_columns(keys), pa.array(part, pa.int32()),
                   pa.array(part_row, pa.int32())]
        self._writer.write_batch(pa.record_batch(columns, schema=PLAN_SCHEMA))
        self.reached += len(rows)
        if len(rows):
            self.reached_batches.append(index)
        count = int((part < 0).sum())
        self.todo += count
        if count:
            self.todo_batches.append(index)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def read(self, index: int) -> pa.RecordBatch:
        self.close()
        if self._reader is None:
            self._reader = ipc.open_file(pa.OSFile(str(self.path)))
        return self._reader.get_batch(index)

    def todo_rows(self, index: int) -> pa.RecordBatch:
        """Row numbers and keys of the rows of batch ``index`` that need scoring."""
        plan = self.read(index)
        return plan.filter(pc.less(plan.column(PART), 0)).select([ROW, *KEY_COLUMNS])


class StepScores:
    """A step's score columns over the rows that reached it, one part per working-copy batch.

    Parts whose values were all null can carry a null type; every read casts
    to the types the step's parts unify to, so ``fit`` and the output see one.
    """

    def __init__(self, folder: Path, columns: tuple[str, ...]) -> None:
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.columns = columns
        self.num_parts = 0
        self._schema: pa.Schema | None = None

    def write(self, index: int, table: pa.Table) -> None:
        assert index == self.num_parts, "parts are written in batch order"
        with ipc.new_file(str(self._path(index)), table.schema) as writer:
            writer.write_table(table)
        self.num_parts += 1
        self._schema = table.schema if self._schema is None else pa.unify_schemas(
            [self._schema, table.schema], promote_options="permissive")
        self.__dict__.pop("num_rows", None)

    def types(self) -> dict[str, pa.DataType]:
        assert self._schema is not None
        return {c: self._schema.field(c).type for c in self.columns}

    def read(self, index: int) -> pa.Table:
        with pa.OSFile(str(self._path(index))) as handle:
            table = ipc.open_file(handle).read_all()
        types = self.types()
        return pa.table({ROW: table.column(ROW),
                         **{c: table.column(c).cast(types[c]) for c in self.columns}})

    def _path(self, index: int) -> Path:
        return self.dir / f"part-{index:06d}.arrow"

    # -- the ScoreColumns protocol, for fit ---------------------------------

    @cached_property
    def num_rows(self) -> int:
        return sum(self.read(i).num_rows for i in range(self.num_parts))

    def column(self, name: str) -> pa.ChunkedArray:
        chunks = [c for i in range(self.num_parts) for c in self.read(i).column(name).chunks]
        return pa.chunked_array(chunks, type=self.types()[name])

    def numpy(self, name: str) -> np.ndarray:
        """The column as numpy; nulls become NaN for numbers (and for a column no row gave a value)."""
        column = self.column(name)
        if pa.types.is_null(column.type):
            return np.full(len(column), np.nan)
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            return pc.fill_null(pc.cast(column, pa.float64()), np.nan).to_numpy()
        return column.to_numpy()
