"""Reading tables (candidates, question files, validation sets) as a stream of Arrow record batches.

JSONL, Parquet, Arrow IPC (file or stream) and a saved Hugging Face
``datasets`` folder are read batch by batch, never whole. JSONL goes through
pyarrow's block reader; when it rejects a block, the file is scanned line by
line to say exactly which line and column are wrong, because "straddling
object" is not an error message a user can act on. Which columns must be
there, as never-null text, is the reader's ``required`` (a candidate
table's by default; a question file needs only ``question``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.json as pajson
import pyarrow.parquet as pq
import xxhash

from curator.errors import CuratorError
from curator.schema import REQUIRED, TYPES

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
ARROW_SUFFIXES = (".arrow", ".ipc", ".feather")


@dataclass(frozen=True)
class Source:
    """A table on disk, how to read it, and the text columns it must have."""

    path: Path
    format: str
    required: tuple[str, ...] = REQUIRED

    @classmethod
    def open(cls, path: str | Path, required: Sequence[str] = REQUIRED) -> Source:
        path = Path(path)
        if not path.exists():
            raise CuratorError(f"{path}: no such file or folder")
        if path.is_dir():
            if (path / "dataset_dict.json").exists():
                raise CuratorError(f"{path}: a DatasetDict; point at one split's folder (e.g. {path}/train)")
            if not (path / "state.json").exists():
                raise CuratorError(f"{path}: a folder, but not a saved Hugging Face dataset (no state.json)")
            return cls(path, "hf", tuple(required))
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
        state = json.loads((self.path / "state.json").read_text())
        return [self.path / f["filename"] for f in state.get("_data_files", [])]

    def fingerprint(self) -> str:
        """A hash of the content (XXH3-128: stable, and fast), so a copy of the same candidates shares the cache."""
        digest = xxhash.xxh3_128()
        for file in self.files():
            with open(file, "rb") as handle:
                while chunk := handle.read(1 << 22):
                    digest.update(chunk)
        return digest.hexdigest()

    def iter_batches(self, batch_rows: int = 16384) -> Iterator[pa.RecordBatch]:
        """Raw record batches in file order (columns not yet checked)."""
        if self.format == "jsonl":
            yield from _jsonl_batches(self.path, self.required)
        elif self.format == "parquet":
            try:
                # pre_buffer keeps every row group read so far alive until the
                # iterator ends: memory would grow with the file.
                yield from pq.ParquetFile(self.path, pre_buffer=False).iter_batches(batch_size=batch_rows)
            except (pa.ArrowInvalid, OSError) as exc:
                raise CuratorError(f"{self.path}: not a readable Parquet file ({exc})") from None
        else:
            for file in self.files():
                yield from _ipc_batches(file)

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


def _jsonl_batches(path: Path, required: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    """Stream JSONL through pyarrow, with a line-exact error when it fails."""
    _check_first_record(path, required)
    options = pajson.ParseOptions(
        explicit_schema=pa.schema([(name, pa.string()) for name in required]),
        unexpected_field_behavior="infer",
        newlines_in_values=False,
    )
    try:
        reader = pajson.open_json(path, read_options=pajson.ReadOptions(block_size=1 << 24), parse_options=options)
        first = reader.read_next_batch()
    except StopIteration:
        return
    except pa.ArrowInvalid as exc:
        _raise_json_error(path, exc, required)
    yield first
    try:
        yield from reader
    except pa.ArrowInvalid as exc:
        _raise_json_error(path, exc, required)


def _check_first_record(path: Path, required: tuple[str, ...]) -> None:
    """A required key absent from the first record is a missing column, not a null."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        line = next((line for line in handle if line.strip()), None)
    if line is None:
        return
    try:
        first = json.loads(line)
    except json.JSONDecodeError:
        return  # reported with its line number by the full scan
    if isinstance(first, dict):
        for column in required:
            if column not in first:
                raise CuratorError(f"{path}: missing required column '{column}' (has: {', '.join(first)})")


def _raise_json_error(path: Path, exc: Exception, required: tuple[str, ...]) -> None:
    """Find the first line that breaks JSONL or the required types, and name it."""
    seen: dict[str, type] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise CuratorError(f"{path}:{line_number}: invalid JSON ({err.msg}, column {err.colno})") from None
            if not isinstance(row, dict):
                raise CuratorError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
            for key, value in row.items():
                if value is None:
                    continue
                if key in required and not isinstance(value, str):
                    raise CuratorError(
                        f"{path}:{line_number}: column '{key}' must be a string, got {type(value).__name__}"
                    )
                kind = _json_kind(value)
                if seen.setdefault(key, kind) is not kind:
                    raise CuratorError(
                        f"{path}:{line_number}: column '{key}' is {kind.__name__} here but "
                        f"{seen[key].__name__} on earlier lines"
                    )
    raise CuratorError(f"{path}: could not be read as JSONL ({exc})") from None


def _json_kind(value: object) -> type:
    return float if isinstance(value, int) and not isinstance(value, bool) else type(value)


def conform(
    batch: pa.RecordBatch, source: Path, first_row: int, required: Sequence[str] = REQUIRED
) -> pa.RecordBatch:
    """Check required columns and nulls, and cast known columns to the schema's types.

    ``first_row`` is the 1-based row number of the batch's first row, for
    errors. A known column that is not required may hold numbers where text
    is wanted (integer ids, numeric references): they are written out.
    """
    names = batch.schema.names
    for column in required:
        if column not in names:
            raise CuratorError(f"{source}: missing required column '{column}' (has: {', '.join(names)})")
    columns = []
    for name, array in zip(names, batch.columns):
        wanted = TYPES.get(name)
        if wanted is not None and array.type != wanted:
            array = _cast(array, wanted, name, source, name in required)
        if name in required and array.null_count:
            row = first_row + _first_null(array)
            raise CuratorError(f"{source}: row {row}: column '{name}' is null")
        columns.append(array)
    return pa.RecordBatch.from_arrays(columns, names=names)


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
