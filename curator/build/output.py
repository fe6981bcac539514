"""Writing a build's split: curated and rejected rows, then the manifest last.

Files are written under temporary names and renamed at the end; the old
manifest is removed first, so ``manifest.json`` exists only beside a
complete, matching set of outputs. The build's scratch folder (plans and
gathered scores) lives beside them under a temporary name too. Splitting a
batch into its files' rows runs where the batch was made (see
:func:`~curator.build.run.run_build`); encoding and compressing run in two
background threads (curated rows, rejected rows), overlapped with each other
and with the build's next batches.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator.background import Worker
from curator.outputs import write_json

ROW_GROUP_ROWS = 32_768
"""Rows gathered into one row group: enough to compress well, few enough that each writing thread holds about
a batch (with twice as many, a build took 3 % longer on 2 cores, the extra in the kernel giving out memory)."""
DICTIONARY_BYTES = 64
"""Text columns whose first values average more bytes than this are written without a dictionary (it would
overflow and fall back anyway, after hashing every value)."""


def _dictionary_columns(batch: pa.RecordBatch) -> list[str]:
    chosen = []
    for name, column in zip(batch.schema.names, batch.columns):
        kind = column.type
        if pa.types.is_string(kind) or pa.types.is_binary(kind) or pa.types.is_large_string(kind) \
                or pa.types.is_large_binary(kind):
            sized = len(column) - column.null_count
            if sized and pc.sum(pc.binary_length(column)).as_py() / sized > DICTIONARY_BYTES:
                continue
        chosen.append(name)
    return chosen


class OutputWriter:
    def __init__(self, output_dir: Path, step_names: list[str], *, per_step: bool) -> None:
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".*.parquet.*.tmp"):
            stale.unlink()
        for stale in self.dir.glob(".scratch-*.tmp"):  # a killed build's
            shutil.rmtree(stale, ignore_errors=True)
        self.targets = ["curated", "rejected"] + ([f"rejected-{name}" for name in step_names] if per_step else [])
        self.step_names = step_names
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.rows = dict.fromkeys(self.targets, 0)
        self._pending: dict[str, list[pa.RecordBatch]] = {t: [] for t in self.targets}
        self._workers: dict[str, Worker] = {}

    def scratch(self) -> Path:
        """A new folder for this build's working files; the caller removes it."""
        return Path(tempfile.mkdtemp(prefix=".scratch-", suffix=".tmp", dir=self.dir))

    def _tmp(self, target: str) -> Path:
        return self.dir / f".{target}.parquet.building.tmp"

    def __enter__(self) -> OutputWriter:
        """Two writing threads: curated rows, and rejected rows (with the per-step files), each its own file."""
        self._stack = contextlib.ExitStack()
        self._workers = {name: self._stack.enter_context(Worker(f"write-{name}")) for name in ("curated", "rejected")}
        return self

    def __exit__(self, *failure: Any) -> None:
        """Wait until every batch is written (after a failure, stop without raising the writers' own)."""
        if failure[0] is None:
            for target in self.targets:
                self._worker(target).submit(self._flush, target)
        self._stack.__exit__(*failure)

    def split(self, batch: pa.RecordBatch) -> dict[str, pa.RecordBatch]:
        """``batch`` (input columns, scores, verdict) cut into the rows of each file; safe in any thread."""
        parts = {"curated": batch.filter(batch.column("keep"))}
        rejected = parts["rejected"] = batch.filter(pc.invert(batch.column("keep")))
        for name in self.step_names if len(self.targets) > 2 else []:
            parts[f"rejected-{name}"] = rejected.filter(pc.equal(rejected.column("dropped_by"), name))
        return parts

    def write(self, batch: pa.RecordBatch, parts: dict[str, pa.RecordBatch]) -> None:
        """Queue the parts of ``batch`` (:meth:`split`) for their files, inside ``with``."""
        assert self._workers, "write inside 'with writer:'"
        if not self.writers:
            dictionary = _dictionary_columns(batch)
            for target in self.targets:
                self.writers[target] = pq.ParquetWriter(self._tmp(target), batch.schema, compression="zstd",
                                                        use_dictionary=dictionary)
        for target, rows in parts.items():
            if rows.num_rows:
                self.rows[target] += rows.num_rows
                self._worker(target).submit(self._write, target, rows)

    @property
    def schema(self) -> pa.Schema | None:
        """The files' schema, once the first batch set it."""
        return next(iter(self.writers.values())).schema if self.writers else None

    def discard(self) -> None:
        """Close and remove the files begun (after the writing threads stopped): the build starts them again."""
        for target, writer in self.writers.items():
            writer.close()
            self._tmp(target).unlink(missing_ok=True)
        self.writers.clear()
        self.rows = dict.fromkeys(self.targets, 0)

    @property
    def cpu(self) -> float:
        """CPU time the writing threads spent encoding and compressing."""
        return sum(worker.cpu for worker in self._workers.values())

    def _worker(self, target: str) -> Worker:
        return self._workers["curated" if target == "curated" else "rejected"]

    def _write(self, target: str, batch: pa.RecordBatch) -> None:
        """Row groups of about ``ROW_GROUP_ROWS`` rows: the parts of several batches go into one."""
        pending = self._pending[target]
        pending.append(batch)
        if sum(b.num_rows for b in pending) >= ROW_GROUP_ROWS:
            self._flush(target)

    def _flush(self, target: str) -> None:
        if self._pending[target]:
            self.writers[target].write_table(pa.Table.from_batches(self._pending[target]))
            self._pending[target] = []

    def finish(self, manifest: dict[str, Any]) -> None:
        """Close, rename into place, and write the manifest last."""
        manifest_path = self.dir / "manifest.json"
        manifest_path.unlink(missing_ok=True)
        for target, writer in self.writers.items():
            writer.close()
            self._tmp(target).replace(self.dir / f"{target}.parquet")
        manifest["outputs"] = {f"{t}.parquet": rows for t, rows in self.rows.items()}
        write_json(manifest_path, manifest)


StepRows = tuple[np.ndarray, "pa.Table | None", dict[str, pa.DataType]]
"""One step's scores in a batch: the reached rows' places in it, their score columns, and the columns' types
(for a batch no row of which reached the step, whose columns are then null)."""


def output_batch(batch: pa.RecordBatch, steps: list[tuple[str, dict[str, str]]], scored: list[StepRows],
                 reach: np.ndarray, dropped_by: np.ndarray, weight: np.ndarray) -> pa.RecordBatch:
    """The batch with every step's public score columns (null where not reached) and the verdict.

    ``steps`` are ``(step name, {score column: output name})``; the per-row
    arrays are this batch's slice of the build's state.
    """
    n = batch.num_rows
    names, arrays = list(batch.schema.names), list(batch.columns)
    for (_, output_names), (positions, table, types) in zip(steps, scored):
        take = np.zeros(n, dtype=np.int64)
        take[positions] = np.arange(len(positions))
        missing = np.ones(n, dtype=bool)
        missing[positions] = False
        indices = pa.array(take, mask=missing)
        for base, out in output_names.items():
            if table is None or not table.num_rows:
                arrays.append(pa.nulls(n, types.get(base, pa.null())))
            else:
                arrays.append(table.column(base).combine_chunks().take(indices))
            names.append(out)
    step_names = pa.array([name for name, _ in steps] or [""], pa.string())
    dropped = pa.DictionaryArray.from_arrays(pa.array(dropped_by, mask=dropped_by < 0), step_names)
    arrays += [pa.array(reach), pa.array(weight), dropped.cast(pa.string())]
    names += ["keep", "weight", "dropped_by"]
    return pa.RecordBatch.from_arrays(arrays, names=names)
