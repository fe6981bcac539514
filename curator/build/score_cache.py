"""On-disk score cache: per step configuration, scores keyed by row (see :mod:`curator.build.row_keys`).

A step's configuration (filter, plugin package, scoring options, the stamps
of files they name, the filter's and the task's code, the input's column
names and types) names one folder. In it, scores are stored by row key in
append-only part files, each written under a temporary name then renamed,
so a killed build loses at most the part it was writing and never leaves a
half-written one. Nothing in the key depends on batch numbers, on the steps
before, or on the executor: any build that gives the filter the same rows
finds their scores. ``meta.json`` holds what the filter learnt while scoring
(for the manifest).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from curator.outputs import atomic_path, write_json

FORMAT_VERSION = 4
KEY_COLUMNS = ("_hi", "_lo")
"""The two halves of a row key, stored beside every score."""
OPEN_PARTS = 16
STALE_SECONDS = 3600


def cache_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([FORMAT_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:32]


def key_columns(keys: np.ndarray) -> list[pa.Array]:
    return [pa.array(keys[:, 0], pa.uint64()), pa.array(keys[:, 1], pa.uint64())]


def keys_of(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    hi, lo = (np.asarray(table.column(c).to_numpy(), dtype=np.uint64) for c in KEY_COLUMNS)
    return np.stack([hi, lo], axis=1) if len(hi) else np.zeros((0, 2), np.uint64)


def parts_in_order(parts: np.ndarray) -> list[int]:
    """The distinct part numbers of ``parts``, in the order they first appear (the order of their warnings)."""
    if not len(parts):
        return []
    if parts[0] == parts[-1] and (parts == parts[0]).all():  # a batch's rows all from one part, as usual
        return [int(parts[0])]
    return parts[np.sort(np.unique(parts, return_index=True)[1])].tolist()


class ScoreStore:
    """The cached scores of one step configuration: look rows up by key, append new ones."""

    def __init__(self, root: Path, key: str) -> None:
        self.dir = root / "scores" / key
        self.key = key
        self._parts: list[Path] = []
        self._warnings: list[list[list[str]]] = []
        self._index: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._frozen = False
        self._open: OrderedDict[int, pa.Table] = OrderedDict()
        self._lock = threading.Lock()

    # -- index --------------------------------------------------------------

    def refresh(self) -> None:
        """Index every part on disk (parts other builds wrote since included): 24 bytes a stored row."""
        if not self.dir.exists():
            self._index = _empty_index()
            return
        self._remove_stale()
        known = set(self._parts)
        for path in sorted(self.dir.glob("part-*.arrow")):
            if path not in known:
                self._parts.append(path)
                metadata = self._table(len(self._parts) - 1).schema.metadata or {}
                self._warnings.append(json.loads(metadata.get(b"warnings", b"[]")))
        his, los, parts, rows = [], [], [], []
        for number in range(len(self._parts)):
            table = self._read(number, KEY_COLUMNS)
            keys = keys_of(table)
            his.append(keys[:, 0])
            los.append(keys[:, 1])
            parts.append(np.full(len(keys), number, np.int32))
            rows.append(np.arange(len(keys), dtype=np.int32))
        if not his:
            self._index = _empty_index()
            return
        hi, lo, part, row = (np.concatenate(a) for a in (his, los, parts, rows))
        order = np.lexsort((lo, hi))
        self._index = (hi[order], lo[order], part[order], row[order])

    def freeze(self) -> None:
        """Index the parts on disk now, and look up only those from here on, from any thread.

        For a pass that stores each batch's new scores while it looks up the
        next: re-indexing after every part would read every part again, and
        the rows a build stores are not the rows it looks up (but for a
        repeated row, which is then scored again, to the same scores).
        """
        self.refresh()
        self._frozen = True

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(part, row)`` of each key's cached scores; part -1 where none is cached."""
        if self._index is None:
            self.refresh()
        hi, lo, part, row = self._index  # type: ignore[misc]
        found_part = np.full(len(keys), -1, np.int32)
        found_row = np.zeros(len(keys), np.int32)
        if not len(hi) or not len(keys):
            return found_part, found_row
        q_hi, q_lo = keys[:, 0], keys[:, 1]
        position = np.searchsorted(hi, q_hi, side="left")
        open_ = np.arange(len(keys))
        while len(open_):  # more than one pass only for equal high halves, which the sort keeps adjacent
            at = position[open_]
            inside = at < len(hi)
            open_, at = open_[inside], at[inside]
            same_hi = hi[at] == q_hi[open_]
            open_, at = open_[same_hi], at[same_hi]
            match = lo[at] == q_lo[open_]
            found_part[open_[match]] = part[at[match]]
            found_row[open_[match]] = row[at[match]]
            open_ = open_[~match]
            position[open_] += 1
        return found_part, found_row

    # -- parts --------------------------------------------------------------

    def append(self, table: pa.Table, warnings: list[list[str]]) -> int:
        """Store ``table`` (key columns and score columns) as a new part; its number, for :meth:`take`."""
        table = table.replace_schema_metadata({b"warnings": json.dumps(warnings).encode()})
        path = self.dir / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.arrow"
        with atomic_path(path) as tmp, ipc.new_file(str(tmp), table.schema) as writer:
            writer.write_table(table)
        with self._lock:
            self._parts.append(path)
            self._warnings.append(warnings)
            if not self._frozen:
                self._index = None  # the next lookup indexes it, with any parts other builds wrote meanwhile
            return len(self._parts) - 1

    def take(self, part: np.ndarray, row: np.ndarray, columns: tuple[str, ...]) -> pa.Table:
        """The score columns at ``(part, row)``, in the order given."""
        if not len(part):
            return pa.table({c: pa.array([], pa.null()) for c in columns})
        if part[0] == part[-1] and (part == part[0]).all():  # one part: a batch scored in this build, usually whole
            table = self._read(int(part[0]), columns)
            if len(row) == table.num_rows and (row == np.arange(len(row))).all():
                return table.combine_chunks()
            return table.take(pa.array(row)).combine_chunks()
        order = np.argsort(part, kind="stable")
        pieces = []
        for number in np.unique(part):
            chosen = order[part[order] == number]
            pieces.append(self._read(int(number), columns).take(pa.array(row[chosen])))
        gathered = pa.concat_tables(pieces, promote_options="permissive")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return gathered.take(pa.array(inverse)).combine_chunks()

    @property
    def num_parts(self) -> int:
        """Parts known to this store (on disk when indexed, and stored since): the next one stored gets this number."""
        return len(self._parts)

    def rows_in(self, number: int) -> int:
        return self._read(number, KEY_COLUMNS).num_rows

    def warnings_of(self, parts: np.ndarray) -> list[list[str]]:
        """The scoring warnings recorded with these parts, each ``[category, message]``."""
        return [w for number in parts.tolist() for w in self._warnings[number]]

    def _read(self, number: int, columns: tuple[str, ...]) -> pa.Table:
        return self._table(number).select(list(columns))

    def _table(self, number: int) -> pa.Table:
        """A part, memory-mapped; the last few stay open (for every thread reading parts)."""
        with self._lock:
            table = self._open.get(number)
            if table is None:
                with pa.memory_map(str(self._parts[number])) as handle:
                    table = ipc.open_file(handle).read_all()
                self._open[number] = table
                if len(self._open) > OPEN_PARTS:
                    self._open.popitem(last=False)
            else:
                self._open.move_to_end(number)
            return table

    def _remove_stale(self) -> None:
        """Temporary files a killed build left behind (a live build renames its own within seconds)."""
        cutoff = time.time() - STALE_SECONDS
        for tmp in self.dir.glob(".part-*.tmp"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except OSError:
                pass

    # -- facts --------------------------------------------------------------

    def facts(self) -> dict[str, Any]:
        path = self.dir / "meta.json"
        return json.loads(path.read_text()).get("facts", {}) if path.exists() else {}

    def record_facts(self, facts: dict[str, Any]) -> None:
        write_json(self.dir / "meta.json", {"facts": facts})


def _empty_index() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros(0, np.int32)
