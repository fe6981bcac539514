"""Turning any input into the build's working copy: checked, grouped, answered, hashed.

The working copy is an uncompressed Arrow IPC file in the cache whose record
batches each hold whole groups, so every later pass streams it batch by batch
without re-parsing JSON or re-running the answer parser. Beside it, a second
file holds each row's content hash and group number (24 bytes a row, see
:mod:`curator.build.row_keys`), batch for batch. Both are keyed by the
input's content, the task (name and code) and the batching, and written under
temporary names. A build that makes one pass (:mod:`curator.build.one_pass`)
reads its input once and keeps no copy: its batches are handed over as they
are answered and hashed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from curator.background import Worker, mapped, prefetched, shared_workers
from curator.build.fingerprints import code_fingerprint
from curator.build.phases import Phases
from curator.build.row_keys import row_hashes, schema_digest, value_hashes
from curator.errors import CuratorError
from curator.groups import group_numbers, group_starts
from curator.io import Source, conform, row_name
from curator.outputs import atomic_path, write_json
from curator.task import Task

FORMAT_VERSION = 5
KEYS_SCHEMA = pa.schema([("hi", pa.uint64()), ("lo", pa.uint64()), ("group", pa.int64())])


@dataclass(frozen=True)
class Prepared:
    """The working copy: its path, row count and batch offsets, and its rows' hashes.

    ``path`` and ``keys_path`` are None where the input was handed to a
    one-pass build batch by batch and no copy was kept (:attr:`streamed`).
    """

    path: Path | None
    keys_path: Path | None
    source: Source
    fingerprint: str
    num_rows: int
    num_groups: int
    offsets: tuple[int, ...]
    schema: pa.Schema
    filled_answer: bool
    streamed: bool = False
    """Handed to this build's stream batch by batch, as it was read."""

    def batches(self, indices: Iterable[int] | None = None) -> Iterator[tuple[int, int, pa.RecordBatch]]:
        """``(index, first_row, batch)`` in order (all, or ``indices``).

        Each batch is memory-mapped on its own: no copy is made, and its pages
        are unmapped when the batch is released (a mapping held for a whole
        pass would keep every page read so far in RSS).
        """
        assert self.path is not None, "a one-pass build keeps no working copy to read again"
        for index in range(self.num_batches) if indices is None else indices:
            with pa.memory_map(str(self.path)) as handle:
                batch = ipc.open_file(handle).get_batch(index)
            yield index, self.offsets[index], batch

    def row_keys(self) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """``(index, first_row, hashes, groups)`` per batch: ``(n, 2)`` uint64 content hashes, group numbers."""
        assert self.keys_path is not None, "a one-pass build keeps no working copy to read again"
        with pa.OSFile(str(self.keys_path)) as handle:
            reader = ipc.open_file(handle)
            for index in range(reader.num_record_batches):
                batch = reader.get_batch(index)
                hashes = np.stack([batch.column("hi").to_numpy(), batch.column("lo").to_numpy()], axis=1)
                yield index, self.offsets[index], hashes, batch.column("group").to_numpy()

    @property
    def schema_digest(self) -> str:
        return schema_digest(self.schema)

    @property
    def num_batches(self) -> int:
        return len(self.offsets)


@dataclass(frozen=True)
class FreshBatch:
    """A batch of the input as it is answered and hashed: what :meth:`Prepared.batches` and
    :meth:`Prepared.row_keys` give for a batch of a working copy."""

    index: int
    first_row: int
    batch: pa.RecordBatch
    hashes: np.ndarray | None
    """Each row's content hash, ``(n, 2)`` uint64; None in a copy made without them (a regroup's first)."""
    groups: np.ndarray


Stream = Callable[[Iterator[FreshBatch]], None]
"""Takes the input's batches as they are answered and hashed, in order (those it leaves are read all the same)."""


class GroupAligner:
    """Re-cuts a stream of batches so that each output batch ends at a group boundary.

    Only the rows carried over from one batch to the next are copied (once,
    joined to the next batch); the batches handed on are slices.
    """

    def __init__(self, batch_rows: int) -> None:
        self.batch_rows = batch_rows
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0

    def push(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        if self.pending_rows < self.batch_rows:
            return
        joined = concat_batches(self.pending)
        cut = int(group_starts(joined.column("id"))[-1])  # the last group may go on
        if cut == 0:  # one group so far: wait for its end
            self.pending = [joined]
            return
        yield joined.slice(0, cut)
        self.pending = [joined.slice(cut)]
        self.pending_rows = joined.num_rows - cut

    def flush(self) -> Iterator[pa.RecordBatch]:
        if self.pending_rows:
            yield concat_batches(self.pending)
        self.pending, self.pending_rows = [], 0


def concat_batches(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One batch of the rows of ``batches`` (same schema), column by column; a lone batch as it is.

    ``pa.Table.from_batches(...).combine_chunks()`` does the same several
    times slower on text columns, and ``pa.concat_batches`` needs pyarrow 19.
    """
    if len(batches) == 1:
        return batches[0]
    columns = [pa.concat_arrays([batch.column(i) for batch in batches]) for i in range(batches[0].num_columns)]
    return pa.RecordBatch.from_arrays(columns, schema=batches[0].schema)


def prepare(
    source: Source,
    task: Task,
    cache_root: Path,
    *,
    batch_rows: int,
    regroup: bool = False,
    phases: Phases | None = None,
    stream: Stream | None = None,
) -> Prepared:
    """The cached working copy of ``source``, built on first use.

    With ``stream`` (a build that makes one pass), where no copy is cached
    and the rows keep the input's order (no ``regroup``), the input is handed
    to ``stream`` batch by batch as it is read, answered and hashed, and no
    copy is written: the copy is what lets a build read its input again, once
    per step (:attr:`Prepared.streamed` says which happened).
    """
    phases = phases or Phases()
    with phases.timing("fingerprint"):
        fingerprint = source.fingerprint()
    key = hashlib.sha256(
        json.dumps([FORMAT_VERSION, fingerprint, task.name, code_fingerprint(type(task)), batch_rows, regroup]).encode()
    ).hexdigest()[:32]
    path = cache_root / "prepared" / f"{key}.arrow"
    keys_path = path.with_suffix(".keys.arrow")
    meta_path = path.with_suffix(".json")
    if path.exists() and keys_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return _load(path, keys_path, source, fingerprint, meta)
    if stream is not None and not regroup:
        meta, schema = _write_working_copy(source, task, None, None, batch_rows, check_groups=True, phases=phases,
                                           stream=stream)
        return Prepared(None, None, source, fingerprint, meta["rows"], meta["groups"], tuple(meta["offsets"]), schema,
                        meta["filled_answer"], streamed=True)
    with atomic_path(path) as tmp, atomic_path(keys_path) as keys_tmp:
        if regroup:
            with atomic_path(path.with_suffix(".unsorted.arrow")) as unsorted:
                first, _ = _write_working_copy(source, task, unsorted, None, batch_rows, check_groups=False,
                                               phases=phases)
                with phases.timing("working copy"):
                    meta = _write_regrouped(unsorted, tmp, keys_tmp, batch_rows, source, first["filled_answer"])
        else:
            meta, _ = _write_working_copy(source, task, tmp, keys_tmp, batch_rows, check_groups=True, phases=phases)
    write_json(meta_path, meta)
    return _load(path, keys_path, source, fingerprint, meta)


def _load(path: Path, keys_path: Path, source: Source, fingerprint: str, meta: dict) -> Prepared:
    with pa.OSFile(str(path)) as handle:
        schema = ipc.open_file(handle).schema
    return Prepared(
        path=path,
        keys_path=keys_path,
        source=source,
        fingerprint=fingerprint,
        num_rows=meta["rows"],
        num_groups=meta["groups"],
        offsets=tuple(meta["offsets"]),
        schema=schema,
        filled_answer=meta["filled_answer"],
    )


@dataclass(frozen=True)
class _Keyed:
    """An answered batch of whole groups with what the working copy records of it."""

    batch: pa.RecordBatch
    filled_answer: bool
    starts: np.ndarray
    """Rows where a group begins."""
    start_hashes: np.ndarray
    """A 64-bit hash of each group's id, to find an id that comes back later."""
    hashes: np.ndarray | None
    """Each row's content hash, ``(n, 2)`` uint64, when the copy keeps them."""

    @classmethod
    def of(cls, batch: pa.RecordBatch, filled_answer: bool, with_hashes: bool) -> _Keyed:
        """A parsed ``answer`` is a function of the rationale and the task's code, which the step's cache
        key holds: only the input's own columns are hashed."""
        ids = batch.column("id")
        starts = group_starts(ids)
        if not with_hashes:
            return cls(batch, filled_answer, starts, value_hashes(ids.take(starts))[:, 0].view(np.int64), None)
        id_hashes = value_hashes(ids)  # for the rows' hashes, and the groups' at their starts
        hashed = batch.drop_columns(["answer"]) if filled_answer else batch
        return cls(batch, filled_answer, starts, id_hashes[starts, 0].view(np.int64),
                   row_hashes(hashed, {"id": id_hashes}))


class _CopyWriter:
    """Writes group-aligned batches, recording offsets and where each group starts.

    With ``keys_dest``, also each row's content hash and group number. The
    writes run in a background thread (Arrow's writer holds no GIL), overlapped
    with answering and hashing the next batches.
    """

    def __init__(self, dest: Path | None, keys_dest: Path | None, *, hashed: bool) -> None:
        self.dest = dest
        self.hashed = hashed
        self.writer: ipc.RecordBatchFileWriter | None = None
        self.keys = None if keys_dest is None else ipc.new_file(str(keys_dest), KEYS_SCHEMA)
        self.schema: pa.Schema | None = None
        self.offsets: list[int] = []
        self.start_hashes: list[np.ndarray] = []
        self.start_rows: list[np.ndarray] = []
        self.rows = 0
        self.groups = 0
        self.worker = Worker("working-copy")

    def write(self, item: _Keyed) -> FreshBatch:
        batch = item.batch
        if self.schema is None:
            self.schema = batch.schema
            if self.dest is not None:
                self.writer = ipc.new_file(str(self.dest), batch.schema)
        elif batch.schema != self.schema:  # a later batch typed otherwise (all nulls, say): hashed as cast
            item = _Keyed.of(batch.cast(self.schema), item.filled_answer, self.hashed)
            batch = item.batch
        groups = group_numbers(item.starts, batch.num_rows) + self.groups
        hashes = item.hashes
        if self.keys is not None:
            assert hashes is not None, "a copy with keys hashes its rows"
            self.worker.submit(self.keys.write_batch, pa.record_batch(
                [pa.array(hashes[:, 0]), pa.array(hashes[:, 1]), pa.array(groups)], schema=KEYS_SCHEMA))
        written = FreshBatch(len(self.offsets), self.rows, batch, hashes, groups)
        self.groups += len(item.starts)
        self.start_hashes.append(item.start_hashes)
        self.start_rows.append(item.starts + self.rows)
        self.offsets.append(self.rows)
        self.rows += batch.num_rows
        if self.writer is not None:
            self.worker.submit(self.writer.write_batch, batch)
        return written

    def close(self, source: Source, *, check_groups: bool, filled_answer: bool) -> dict:
        self.worker.close()
        if self.schema is None:
            raise CuratorError(f"{source.path}: no rows")
        if self.writer is not None:
            self.writer.close()
        if self.keys is not None:
            self.keys.close()
        hashes = np.concatenate(self.start_hashes)
        if check_groups:
            _check_contiguous(hashes, np.concatenate(self.start_rows), self.dest, source)
        return {"rows": self.rows, "groups": len(hashes), "offsets": self.offsets, "filled_answer": filled_answer}


def _write_working_copy(source: Source, task: Task, dest: Path | None, keys_dest: Path | None, batch_rows: int, *,
                        check_groups: bool, phases: Phases, stream: Stream | None = None) -> tuple[dict, pa.Schema]:
    """Reading, checking and cutting run in one background thread; answering and hashing in a pool of them.

    Both are mostly Arrow and numpy kernels that release the GIL, so on two
    cores two batches are answered and hashed at once; only the hashing of
    long texts (one XXH3 call per value) holds it. A stream's own pool (the
    one pass's steps) runs beside this one, and they share the CPUs.
    """
    out = _CopyWriter(dest, keys_dest, hashed=keys_dest is not None or stream is not None)
    filled_answer = False

    def answered_and_keyed(batch: pa.RecordBatch) -> _Keyed:
        with phases.timing("answer", wall=False):
            answered, filled = _answered(batch, task)
        with phases.timing("working copy", wall=False):
            return _Keyed.of(answered, filled, out.hashed)

    def written() -> Iterator[FreshBatch]:
        nonlocal filled_answer
        aligned = prefetched(_aligned_batches(source, batch_rows))
        workers = None if stream is None else shared_workers(2)
        for item in phases.timed("read and answer", mapped(answered_and_keyed, aligned, workers=workers)):
            with phases.timing("working copy"):
                fresh = out.write(item)
            filled_answer = item.filled_answer  # the last batch's says
            yield fresh

    with out.worker:
        batches = written()
        if stream is not None:
            stream(batches)
        for _ in batches:  # what a stream left (all of it, without one): the copy is written whole
            pass
        with phases.timing("working copy"):
            meta = out.close(source, check_groups=check_groups, filled_answer=filled_answer)
    phases.add("working copy", 0.0, out.worker.cpu)
    assert out.schema is not None
    return meta, out.schema


def _aligned_batches(source: Source, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The input checked and cut at group ends, batch by batch."""
    aligner = GroupAligner(batch_rows)
    next_row = 1
    for raw in source.iter_batches(batch_rows):
        batch = conform(raw, source.path, next_row)
        next_row += batch.num_rows
        yield from aligner.push(batch)
    yield from aligner.flush()


def _answered(batch: pa.RecordBatch, task: Task) -> tuple[pa.RecordBatch, bool]:
    """Parse ``answer`` from the rationale when absent, else canonicalise it; normalise ``reference``.

    Supplied answers go through the task too, so that ``18.0`` and ``18`` are
    one vote and one correct answer, as they are when the task parses them.
    """
    names = batch.schema.names
    columns = dict(zip(names, batch.columns))
    filled = "answer" not in columns
    if filled:
        columns["answer"] = task.extract_batch(columns["rationale"])
    else:
        columns["answer"] = task.normalize_reference_batch(columns["answer"])
    if "reference" in columns:
        columns["reference"] = task.normalize_reference_batch(columns["reference"])
    order = names if not filled else _insert_after(names, "rationale", "answer")
    return pa.RecordBatch.from_arrays([columns[n] for n in order], names=order), filled


def _insert_after(names: list[str], anchor: str, name: str) -> list[str]:
    index = names.index(anchor) + 1
    return [*names[:index], name, *names[index:]]


def _check_contiguous(hashes: np.ndarray, rows: np.ndarray, dest: Path | None, source: Source) -> None:
    order = np.argsort(hashes, kind="stable")
    repeated = np.flatnonzero(hashes[order][1:] == hashes[order][:-1])
    if not len(repeated):
        return
    first, second = sorted((int(rows[order[repeated[0]]]), int(rows[order[repeated[0] + 1]])))
    ids = _ids_at(dest, [first, second], source)
    if ids[0] != ids[1]:  # a 64-bit hash collision between different ids: not an error
        return
    raise CuratorError(
        f"{source.path}: id '{ids[0]}' is not contiguous ({row_name(source.path, first + 1)} and "
        f"{row_name(source.path, second + 1)} start "
        f"separate runs); keep each question's candidates together, or set 'regroup: true'"
    )


def _ids_at(path: Path | None, rows: list[int], source: Source) -> list[str]:
    """The ids at ``rows`` (ascending), from the copy, or from the input where none was kept."""
    if path is not None:
        with pa.memory_map(str(path)) as handle:
            table = ipc.open_file(handle).read_all()
            return table.column("id").take(pa.array(rows)).to_pylist()
    found, start = [], 0
    for batch in source.iter_batches():
        ids = batch.column("id")
        found += [str(ids[row - start].as_py()) for row in rows if start <= row < start + batch.num_rows]
        start += batch.num_rows
    return found


def _write_regrouped(unsorted: Path, dest: Path, keys_dest: Path, batch_rows: int, source: Source,
                     filled_answer: bool) -> dict:
    """Stable-sort rows by first appearance of their id (holds the id column in memory)."""
    aligner = GroupAligner(batch_rows)
    out = _CopyWriter(dest, keys_dest, hashed=True)
    with out.worker, pa.memory_map(str(unsorted)) as handle:
        table = ipc.open_file(handle).read_all()
        codes = pc.dictionary_encode(table.column("id").combine_chunks()).indices.to_numpy()
        order = np.argsort(codes, kind="stable")
        for lo in range(0, len(order), batch_rows):
            for batch in aligner.push(concat_batches(table.take(pa.array(order[lo : lo + batch_rows])).to_batches())):
                out.write(_Keyed.of(batch, filled_answer, with_hashes=True))
        for batch in aligner.flush():
            out.write(_Keyed.of(batch, filled_answer, with_hashes=True))
    return out.close(source, check_groups=False, filled_answer=filled_answer)
