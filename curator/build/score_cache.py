"""On-disk score cache: one folder per (input, chain of steps, filter scoring options).

Scores are written one part file per working-copy batch, each under a
temporary name then renamed, so a killed build resumes at the first missing
part and never reads a half-written one. ``meta.json`` marks a step complete
and holds what the filter learnt while scoring (for the manifest).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from curator.outputs import atomic_path, write_json

ROW = "_row"
"""Absolute row number in the working copy, stored beside every score."""


MAX_STAMPED_FILES = 10_000


def file_stamps(values: Any, base_dir: Path) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of each local file an option names, folders included.

    A model retrained in place or an edited validation set then changes the
    cache key. Strings that are not local paths (hub names) add nothing.
    """
    stamps: list[tuple[str, int, int]] = []

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, str) and value and "\n" not in value:
            path = Path(value).expanduser()
            path = path if path.is_absolute() else base_dir / path
            try:
                if path.is_file():
                    files = [path]
                elif path.is_dir():
                    files = sorted(path.rglob("*"))[:MAX_STAMPED_FILES]
                else:
                    return
            except OSError:
                return
            for file in files:
                if file.is_file():
                    info = file.stat()
                    stamps.append((str(file), info.st_size, info.st_mtime_ns))

    visit(values)
    return stamps


def cache_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class StepCache:
    """The score parts of one step."""

    def __init__(self, root: Path, key: str) -> None:
        self.dir = root / "scores" / key
        self.key = key

    def part_path(self, index: int) -> Path:
        return self.dir / f"part-{index:06d}.arrow"

    def has(self, index: int) -> bool:
        return self.part_path(index).exists()

    def write(self, index: int, table: pa.Table) -> None:
        with atomic_path(self.part_path(index)) as tmp, ipc.new_file(str(tmp), table.schema) as writer:
            writer.write_table(table)

    def read(self, index: int) -> pa.Table:
        with pa.OSFile(str(self.part_path(index))) as handle:
            return ipc.open_file(handle).read_all()

    @property
    def complete(self) -> bool:
        return (self.dir / "meta.json").exists()

    def meta(self) -> dict[str, Any]:
        return json.loads((self.dir / "meta.json").read_text())

    def finish(self, meta: dict[str, Any]) -> None:
        write_json(self.dir / "meta.json", meta)


class CachedScores:
    """A step's score columns over every row that reached it, read part by part."""

    def __init__(self, cache: StepCache, num_parts: int) -> None:
        self.cache = cache
        self.num_parts = num_parts

    @cached_property
    def num_rows(self) -> int:
        return sum(self.cache.read(i).num_rows for i in range(self.num_parts))

    def column(self, name: str) -> pa.ChunkedArray:
        chunks = [self.cache.read(i).column(name) for i in range(self.num_parts)]
        return pa.chunked_array([c for chunk in chunks for c in chunk.chunks], type=chunks[0].type if chunks else None)

    def numpy(self, name: str) -> np.ndarray:
        """The column as numpy; nulls become NaN for numbers."""
        column = self.column(name)
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            return pc.fill_null(pc.cast(column, pa.float64()), np.nan).to_numpy()
        return column.to_numpy()
