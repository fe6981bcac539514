"""Reading JSONL as Arrow record batches of ``batch_rows`` lines, in bounded memory, with line-exact errors.

pyarrow's streaming JSON reader fixes its schema from the first block, so a
valid file over one block is refused when a column first appears later, or
turns from null to text or from integers to floats; and it reads ahead,
so memory grows with the file. Here the file is read twice, a block of
lines at a time: a first pass parses each block on its own and widens one
schema over all of them (null to anything, int to float, a "date" that a
later line shows to be text to text), then the second pass parses every
``batch_rows`` lines against that schema. Memory is a block, whatever the
file's length. The required columns are parsed as text in both passes, so
a number there is refused with its line. When pyarrow cannot read a block,
its lines are read one by one to name the first line at fault; when no
single line is (the types of two blocks disagree), the whole file is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from curator.errors import CuratorError

SCHEMA_BLOCK = 1 << 22
"""Bytes of whole lines the schema pass parses at a time."""
MAX_BATCH_BYTES = 1 << 25
"""A batch ends at this many bytes of text even before ``batch_rows`` lines (very long rows)."""
READ_SIZE = 1 << 22
TEXT_TYPES = (pa.string(), pa.large_string())


def jsonl_schema(path: Path, required: tuple[str, ...]) -> pa.Schema | None:
    """One schema every line of the file fits (None: no rows), the required columns as text."""
    schema: pa.Schema | None = None
    options = _parse_options(pa.schema([(name, pa.string()) for name in required]), "infer")
    given: set[str] = set()  # required columns with a value somewhere (pyarrow fills absent ones with nulls)
    for first_line, lines, chunk in line_blocks(path, 1 << 62, SCHEMA_BLOCK):
        table = _parse(path, chunk, first_line, lines, options, required)
        if table.num_rows:
            schema = _widen(path, schema, table.schema, required)
            given.update(c for c in required if table.column(c).null_count < table.num_rows)
    if schema is not None:
        for column in required:
            if column not in given:
                has = [name for name in schema.names if name not in required or name in given]
                raise CuratorError(f"{path}: missing required column '{column}' (has: {', '.join(has)})")
    return schema


def jsonl_batches(path: Path, schema: pa.Schema, required: tuple[str, ...],
                  batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The file's rows, ``batch_rows`` lines (at most) to a batch, every batch in ``schema``."""
    options = _parse_options(schema, "error")
    for first_line, lines, chunk in line_blocks(path, batch_rows, MAX_BATCH_BYTES):
        table = _parse(path, chunk, first_line, lines, options, required)
        if table.num_rows:
            yield from table.combine_chunks().to_batches(max_chunksize=table.num_rows)


def line_blocks(path: Path, lines: int, max_bytes: int) -> Iterator[tuple[int, int, bytes]]:
    """``(first line number, line count, bytes)`` of runs of ``lines`` whole lines (or ``max_bytes``)."""
    first_line = 1
    pending: list[bytes] = []
    pending_lines = pending_bytes = 0
    with open(path, "rb") as handle:
        while block := handle.read(READ_SIZE):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10) + 1
            start = at = 0
            while at < len(ends):
                take = min(lines - pending_lines, len(ends) - at)
                end = int(ends[at + take - 1])
                pending.append(block[start:end])
                pending_lines += take
                pending_bytes += end - start
                start, at = end, at + take
                if pending_lines == lines or pending_bytes >= max_bytes:
                    yield first_line, pending_lines, b"".join(pending)
                    first_line += pending_lines
                    pending, pending_lines, pending_bytes = [], 0, 0
            if start < len(block):
                pending.append(block[start:])
                pending_bytes += len(block) - start
    if pending and any(piece.strip() for piece in pending):
        yield first_line, pending_lines + 1, b"".join(pending)


def line_of_row(path: Path, row: int) -> int:
    """The 1-based line of the 1-based ``row`` (blank lines hold no row); read only to report an error."""
    seen = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                seen += 1
                if seen == row:
                    return number
    return row


def _parse_options(schema: pa.Schema, unexpected: str) -> pajson.ParseOptions:
    return pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior=unexpected,
                               newlines_in_values=False)


def _parse(path: Path, chunk: bytes, first_line: int, lines: int, options: pajson.ParseOptions,
           required: tuple[str, ...]) -> pa.Table:
    read = pajson.ReadOptions(use_threads=True, block_size=max(1 << 20, len(chunk) // 4 + 1))
    try:
        table = pajson.read_json(pa.py_buffer(chunk), read_options=read, parse_options=options)
        table.validate(full=True)  # pyarrow copies invalid UTF-8 into strings without a word
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        _raise_line_error(path, chunk.splitlines(), first_line, options.explicit_schema, required)
        raise CuratorError(f"{path}: lines {first_line}-{first_line + lines - 1} could not be read as JSONL "
                           f"({' '.join(str(exc).split())})") from None
    return table


def _widen(path: Path, schema: pa.Schema | None, block: pa.Schema, required: tuple[str, ...]) -> pa.Schema:
    """The narrowest schema both fit, columns in order of first appearance."""
    if schema is None or schema == block:
        return block
    try:
        return pa.unify_schemas([schema, block], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    fields = {f.name: f for f in schema}
    for field in block:
        known = fields.get(field.name)
        if known is None:
            fields[field.name] = field
            continue
        try:
            fields[field.name] = pa.unify_schemas([pa.schema([known]), pa.schema([field])],
                                                  promote_options="permissive").field(0)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if not all(_text_like(t) for t in (known.type, field.type)):
                _raise_file_error(path, required)
                raise CuratorError(f"{path}: column '{field.name}' is {known.type} on some lines and "
                                   f"{field.type} on others") from None
            fields[field.name] = pa.field(field.name, pa.string())
    return pa.schema(list(fields.values()))


def _text_like(kind: pa.DataType) -> bool:
    """Types pyarrow infers from JSON strings: what one block reads as a timestamp, another may read as text."""
    return kind in TEXT_TYPES or pa.types.is_timestamp(kind) or pa.types.is_date(kind)


def _raise_line_error(path: Path, lines: list[bytes], first_line: int, schema: pa.Schema | None,
                      required: tuple[str, ...]) -> None:
    """Name the first of ``lines`` that is not UTF-8, not a JSON object, or does not fit ``schema``."""
    known = {} if schema is None else {f.name: f.type for f in schema}
    seen: dict[str, type] = {}
    for number, raw in enumerate(lines, first_line):
        problem = _line_problem(raw, known, seen, required)
        if problem:
            raise CuratorError(f"{path}:{number}: {problem}")


def _raise_file_error(path: Path, required: tuple[str, ...]) -> None:
    """Name the first line of the file whose value types differ from the lines before."""
    seen: dict[str, type] = {}
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            problem = _line_problem(raw, {}, seen, required)
            if problem:
                raise CuratorError(f"{path}:{number}: {problem}")


def _line_problem(raw: bytes, known: dict[str, pa.DataType], seen: dict[str, type],
                  required: tuple[str, ...]) -> str | None:
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte {exc.start + 1} of the line is {raw[exc.start]:#04x})"
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        return f"invalid JSON ({err.msg}, column {err.colno})"
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    for key, value in row.items():
        if value is None:
            continue
        if key in required and not isinstance(value, str):
            return f"column '{key}' must be a string, got {type(value).__name__}"
        kind = _json_kind(value)
        if key in known and not _fits(kind, known[key]):
            return f"column '{key}' is {kind.__name__} here but {known[key]} on other lines"
        if seen.setdefault(key, kind) is not kind:
            return f"column '{key}' is {kind.__name__} here but {seen[key].__name__} on earlier lines"
    return None


def _json_kind(value: object) -> type:
    return float if isinstance(value, int) and not isinstance(value, bool) else type(value)


def _fits(kind: type, wanted: pa.DataType) -> bool:
    if pa.types.is_null(wanted):
        return False
    if kind is str:
        return _text_like(wanted)
    if kind is float:
        return pa.types.is_integer(wanted) or pa.types.is_floating(wanted)
    if kind is bool:
        return pa.types.is_boolean(wanted)
    if kind is list:
        return pa.types.is_list(wanted) or pa.types.is_large_list(wanted)
    if kind is dict:
        return pa.types.is_struct(wanted)
    return True
