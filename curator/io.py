"""Reading tables (candidates, question files, validation sets) as a stream of Arrow record batches.

JSONL, Parquet, Arrow IPC (file or stream) and a saved Hugging Face
``datasets`` folder are read batch by batch, never whole. JSONL is read in
blocks of lines against one schema found by a first pass
(:mod:`curator.jsonl`), and its errors name the line, because "straddling
object" is not an error message a user can act on; errors in other formats
name the 1-based row. Which columns must be there, as never-null text, is
the reader's ``required`` (a candidate table's by default; a question file
needs only ``question``). Text must be UTF-8 in every format.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import xxhash

from curator.errors import CuratorError
from curator.jsonl import jsonl_batches, jsonl_schema, line_of_row
from curator.schema import REQUIRED, TYPES

if TYPE_CHECKING:
    from curator.hf import DatasetName

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
FINGERPRINT_CHUNK = 16 << 20
"""Bytes of a mapped file hashed at a time, then let go of (a multiple of any page size)."""
ARROW_SUFFIXES = (".arrow", ".ipc", ".feather")


@dataclass(frozen=True)
class Source:
    """A table on disk, how to read it, and the text columns it must have."""

    path: Path
    format: str
    required: tuple[str, ...] = REQUIRED
    _found: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """What one pass over the file found (a JSONL file's schema), for the passes after it."""

    @classmethod
    def open(cls, path: str | Path | DatasetName, required: Sequence[str] = REQUIRED) -> Source:
        from curator import hf  # light: `datasets` is imported only when a dataset is read

        if hf.is_dataset_name(path):  # hf:owner/name, streamed through datasets.load_dataset
            return hf.open_dataset(path, required)
        path = Path(str(path))
        if not path.exists():
            raise CuratorError(f"{path}: no such file or folder")
        if path.is_dir():
            if (path / "dataset_dict.json").exists():
                raise CuratorError(f"{path}: a DatasetDict; point at one split's folder (e.g. {path}/train)")
            if not (path / "state.json").exists():
                raise CuratorError(f"{path}: a folder, but not a saved Hugging Face dataset (no state.json)")
            source = cls(path, "hf", tuple(required))
            source.files()  # state.json is read and every file it names found, before any work
            return source
        suffix = path.suffix.lower()
        if suffix in JSONL_SUFFIXES:
            return cls(path, "jsonl", tuple(required))
        if suffix == ".parquet":
            return cls(path, "parquet", tuple(required))
        if suffix in ARROW_SUFFIXES:
            return cls(path, "arrow", tuple(required))
        raise CuratorError(f"{path}: unknown format '{suffix}' (use .jsonl, .parquet, .arrow or a dataset folder)")

    def files(self) -> list[Path]:
        if self.format != "hf":
            return [self.path]
        return _dataset_files(self.path)

    def fingerprint(self) -> str:
        """A hash of the content (XXH3-128: stable, and fast), so a copy of the same candidates shares the cache."""
        digest = xxhash.xxh3_128()
        for file in self.files():
            with open(file, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size:  # an empty file cannot be mapped, and adds nothing
                    _hash_mapped(handle.fileno(), size, digest)
        return digest.hexdigest()

    def num_rows(self) -> int | None:
        """The rows the file says it holds, without reading them (a Parquet footer); None where only reading tells.

        For progress bars: a bad file is reported by reading it.
        """
        if self.format != "parquet":
            return None
        try:
            return pq.ParquetFile(self.path).metadata.num_rows
        except (pa.ArrowInvalid, OSError):
            return None

    def iter_batches(self, batch_rows: int = 16384) -> Iterator[pa.RecordBatch]:
        """Raw record batches in file order (columns not yet checked)."""
        if self.format == "jsonl":
            schema = self.jsonl_schema()
            if schema is not None:
                yield from jsonl_batches(self.path, schema, self.required, batch_rows)
        elif self.format == "parquet":
            try:
                # pre_buffer keeps every row group read so far alive until the
                # iterator ends: memory would grow with the file. Buffered reads and
                # one decoding thread hold less of a row group at a time; a build
                # decodes in a thread of its own, beside those that work on the batches.
                yield from pq.ParquetFile(self.path, pre_buffer=False, buffer_size=1 << 22).iter_batches(
                    batch_size=batch_rows, use_threads=False)
            except (pa.ArrowInvalid, OSError) as exc:
                raise CuratorError(f"{self.path}: not a readable Parquet file ({exc})") from None
        else:
            for file in self.files():
                yield from _ipc_batches(file)

    def jsonl_schema(self) -> pa.Schema | None:
        """The schema every line of a JSONL file fits (None: no rows), found once per file state."""
        stat = self.path.stat()
        key = f"jsonl:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in self._found:
            self._found.clear()
            self._found[key] = jsonl_schema(self.path, self.required)
        return self._found[key]

    def checked_batches(self, batch_rows: int = 16384) -> Iterator[pa.RecordBatch]:
        """Record batches with the required columns checked and known columns cast (:func:`conform`)."""
        first_row = 1
        for batch in self.iter_batches(batch_rows):
            yield conform(batch, self.path, first_row, self.required)
            first_row += batch.num_rows

    def read_table(self) -> pa.Table:
        """The whole table, checked: for what is read at once (training data, a validation set)."""
        batches = list(self.checked_batches())
        if not batches:
            return pa.table({name: pa.array([], pa.string()) for name in self.required})
        return pa.Table.from_batches(batches)


def _dataset_files(folder: Path) -> list[Path]:
    """The Arrow files a saved dataset's ``state.json`` lists, each checked to be there."""
    state_path = folder / "state.json"
    try:
        state = json.loads(state_path.read_bytes())
    except (UnicodeDecodeError, ValueError) as exc:
        raise CuratorError(f"{state_path}: not valid JSON ({exc})") from None
    entries = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("filename"), str)
                                                for e in entries):
        raise CuratorError(f"{state_path}: no '_data_files' list of {{\"filename\": ...}} (not a saved dataset?)")
    files = [folder / entry["filename"] for entry in entries]
    for file in files:
        if not file.is_file():
            raise CuratorError(f"{folder}: the data file '{file.name}' that state.json names is missing")
    return files


def row_place(path: Path, row: int) -> str:
    """Where the 1-based ``row`` of a table is, for an error: ``FILE:LINE`` for JSONL, ``FILE: row N`` otherwise."""
    if _is_jsonl(path):
        return f"{path}:{line_of_row(path, row)}"
    return f"{path}: row {row}"


def row_name(path: Path, row: int) -> str:
    """``line N`` of a JSONL file, ``row N`` of any other table."""
    return f"line {line_of_row(path, row)}" if _is_jsonl(path) else f"row {row}"


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in JSONL_SUFFIXES and path.is_file()


def _ipc_batches(path: Path) -> Iterator[pa.RecordBatch]:
    try:
        with pa.OSFile(str(path)) as handle:
            reader = ipc.open_file(handle)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
        return
    except pa.ArrowInvalid:
        pass
    try:
        with pa.OSFile(str(path)) as handle:
            yield from ipc.open_stream(handle)
    except pa.ArrowInvalid as exc:
        raise CuratorError(f"{path}: not an Arrow IPC file or stream ({exc})") from None


def _hash_mapped(fd: int, size: int, digest: Any) -> None:
    """Hash a file through a mapping: no copy into fresh memory, and each call releases the GIL (a build's other
    threads work meanwhile). Each chunk's pages are let go of once hashed, or the whole file would count in the
    process's resident memory."""
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
        for start in range(0, size, FINGERPRINT_CHUNK):
            digest.update(view[start : start + FINGERPRINT_CHUNK])
            if hasattr(mmap, "MADV_DONTNEED"):
                mapped.madvise(mmap.MADV_DONTNEED, start, min(FINGERPRINT_CHUNK, size - start))


def conform(
    batch: pa.RecordBatch, source: Path, first_row: int, required: Sequence[str] = REQUIRED
) -> pa.RecordBatch:
    """Check required columns and nulls, and cast known columns to the schema's types.

    ``first_row`` is the 1-based row number of the batch's first row, for
    errors. A known column that is not required may hold numbers where text
    is wanted (integer ids, numeric references): they are written out.
    Dictionary-encoded columns are decoded, and text is checked to be UTF-8.
    """
    names = batch.schema.names
    for column in required:
        if column not in names:
            raise CuratorError(f"{source}: missing required column '{column}' (has: {', '.join(names)})")
    columns = []
    for name, array in zip(names, batch.columns):
        if pa.types.is_dictionary(array.type):  # pandas categoricals; one dictionary per batch cannot go on
            array = array.dictionary_decode()
        wanted = TYPES.get(name)
        if wanted is not None and array.type != wanted:
            array = _cast(array, wanted, name, source, name in required)
        if name in required and array.null_count:
            row = first_row + _first_null(array)
            raise CuratorError(f"{row_place(source, row)}: column '{name}' is null")
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            _check_utf8(array, name, source, first_row)
        columns.append(array)
    return pa.RecordBatch.from_arrays(columns, names=names)


def _check_utf8(array: pa.Array, name: str, source: Path, first_row: int) -> None:
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        for index, value in enumerate(array.cast(pa.binary()).to_pylist()):
            try:
                if value is not None:
                    value.decode("utf-8")
            except UnicodeDecodeError:
                raise CuratorError(f"{row_place(source, first_row + index)}: column '{name}' is not UTF-8 text") from None
        raise


def _cast(array: pa.Array, wanted: pa.DataType, name: str, source: Path, required: bool) -> pa.Array:
    allowed_to_string = pa.types.is_integer(array.type) or pa.types.is_floating(array.type)
    if pa.types.is_string(wanted) and not (
        pa.types.is_large_string(array.type) or pa.types.is_null(array.type) or (allowed_to_string and not required)
    ):
        raise CuratorError(f"{source}: column '{name}' must be a string, got {array.type}")
    try:
        return pc.cast(array, wanted)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise CuratorError(f"{source}: column '{name}' must be {wanted}, got {array.type} ({exc})") from None


def _first_null(array: pa.Array) -> int:
    return int(pc.index(pc.is_null(array), True).as_py())
