"""What a cached score is keyed by: a 128-bit hash of its row's content, or of its group's.

Each row is hashed, as it is read, over the values of all its input columns
(a supplied ``answer`` as the task canonicalised it; an ``answer`` the task
parsed from the rationale is left out, as the rationale and the task's code,
which the step's cache key holds, decide it); the columns' names and types
go into the step's cache key (:func:`schema_digest`). A filter whose scores depend on the row alone
(``scope = "row"``) keys them by that hash. A group filter's scores depend on
which rows of the group reach it, so they are keyed by the hash of those
rows' hashes, in order, and the row's place among them: a score is reused
only where the filter would be given exactly the same rows again.

Keys are ``(n, 2)`` uint64 arrays; 128 bits make a collision between two
different rows of any real dataset vanishingly unlikely. They key an on-disk
cache, so they must come out the same in every process, on every machine and
with every version of the libraries: each value's bytes go through XXH3-128
(a fixed, published function; the ``xxhash`` package), except values under
16 bytes, which fit in 128 bits with their length and are scrambled by an
invertible mix of SplitMix64's finaliser (numpy, no Python loop); fixed-width
values go through that finaliser too, and the per-column hashes are combined
by column place and mixed with it, all on little-endian integers. Hash
functions whose output their library may change (Arrow's, polars', Python's
``hash``) are not used. XXH3 is not a cryptographic hash: someone who can
write the input could make two rows collide, but such a person can already
write whatever rows and answers they like.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

_PLACE = np.uint64(0x9E3779B97F4A7C15)  # odd, so distinct places in a group give distinct keys
_GROUP_SALTS = (np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))
_NULL = np.array([0x6E756C6C2D68692D, 0x6E756C6C2D6C6F2D], dtype=np.uint64)  # a null's hash, both halves
_COLUMN = np.uint64(0xD6E8FEB86659FD93)  # odd: the column's place changes every lane
SHORT = 16
"""Values shorter than this many bytes are hashed by :func:`_short_hashes`, the rest by XXH3-128."""


def schema_digest(schema: pa.Schema) -> str:
    """The columns' names and types: the same values under other names are other rows."""
    described = [(field.name, str(field.type)) for field in schema]
    return hashlib.blake2b(json.dumps(described).encode(), digest_size=16).hexdigest()


def row_hashes(batch: pa.RecordBatch, known: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """The content hash of every row: its columns' value hashes, combined by column place.

    Two rows get the same hash only where every column holds the same value
    (a null differs from every value, an empty string included). ``known``
    holds the :func:`value_hashes` of columns the caller hashed already.
    """
    # Each column's hashes times an odd number of its own, summed, then mixed: a row that differs in any
    # column changes the sum by an odd multiple of a pseudo-random difference, which cancels only by chance.
    total = np.zeros((batch.num_rows, 2), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for place, (name, column) in enumerate(zip(batch.schema.names, batch.columns)):
            hashes = known[name] if known is not None and name in known else value_hashes(column)
            total += hashes * (np.uint64(2 * place + 1) * _COLUMN)
    return _mix(total)


def value_hashes(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 128-bit hash of each value of a column, ``(n, 2)`` uint64; the column's type is the caller's to key.

    Text and bytes: XXH3-128 of the bytes (under 16 bytes: the bytes and
    their length, mixed), computed once per run of equal values (a
    question's rows repeat its id, question and reference).
    Integers, floats, booleans, dates and times: their 64-bit value, mixed.
    Anything else: the hash of its text (canonical JSON for nested values).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_dictionary(kind):
        return value_hashes(column.dictionary_decode())
    if pa.types.is_boolean(kind):
        return _fixed_width_hashes(column.cast(pa.uint8()))
    if pa.types.is_primitive(kind) and kind.bit_width in (8, 16, 32, 64):  # numbers, dates, times
        return _fixed_width_hashes(column)
    if pa.types.is_string(kind) or pa.types.is_binary(kind) or pa.types.is_large_string(kind) \
            or pa.types.is_large_binary(kind):
        return _bytes_hashes(column.cast(pa.large_binary()))
    try:
        text = pc.cast(column, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # nested values: canonical JSON
        text = pa.array([None if v is None else json.dumps(v, sort_keys=True, default=str) for v in column.to_pylist()],
                        pa.string())
    return _bytes_hashes(text.cast(pa.large_binary()))


def _bytes_hashes(values: pa.LargeBinaryArray) -> np.ndarray:
    n = len(values)
    if n == 0:
        return np.zeros((0, 2), dtype=np.uint64)
    # One hash per run of equal values: each value is compared with the one before it (nulls start runs).
    changed = pc.fill_null(pc.not_equal(values.slice(1), values.slice(0, n - 1)), True)
    starts = np.concatenate(([0], np.asarray(pc.indices_nonzero(changed)).astype(np.int64) + 1))
    offsets = np.frombuffer(values.buffers()[1], dtype="<i8", count=n + 1, offset=values.offset * 8)
    buffer = values.buffers()[2] or pa.py_buffer(b"\0")
    data = np.frombuffer(buffer, dtype=np.uint8)
    begin, length = offsets[starts], offsets[starts + 1] - offsets[starts]
    runs = np.empty((len(starts), 2), dtype=np.uint64)
    short = length < SHORT
    runs[short] = _short_hashes(data, begin[short], length[short])
    long = np.flatnonzero(~short)
    view, digest = memoryview(buffer), xxhash.xxh3_128_digest
    digests = b"".join([digest(view[b:e]) for b, e in zip(begin[long].tolist(), (begin + length)[long].tolist())])
    runs[long] = np.frombuffer(digests, dtype=">u8").reshape(-1, 2)
    out = runs if len(starts) == n else np.repeat(runs, np.diff(starts, append=n), axis=0)
    return _nulls_marked(out, values)


def _short_hashes(data: np.ndarray, begin: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Values of under 16 bytes, vectorised: the bytes and the length fill 128 bits exactly, then a bijective mix.

    No two short values share a hash; a short and a long value (XXH3) collide only by chance.
    """
    # The 16 bytes from each value's start as two little-endian words; the bytes past the value are cleared
    # and the last byte holds the length.
    inside = begin + SHORT <= len(data)
    windows = np.lib.stride_tricks.as_strided(data, (max(len(data) - SHORT + 1, 0), SHORT), (1, 1), writeable=False)
    if inside.all():
        padded = windows[begin]
    else:
        padded = np.zeros((len(begin), SHORT), dtype=np.uint8)
        padded[inside] = windows[begin[inside]]
        for row in np.flatnonzero(~inside):  # values among the buffer's last 16 bytes
            padded[row, : length[row]] = data[begin[row] : begin[row] + length[row]]
    words = padded.view("<u8")
    bits = length.astype(np.uint64) * np.uint64(8)
    low = words[:, 0] & _low_bits(np.minimum(bits, np.uint64(64)))
    high = (words[:, 1] & _low_bits(bits - np.minimum(bits, np.uint64(64)))) | (length.astype(np.uint64) << np.uint64(56))
    low = _mix(low)
    high = _mix(high ^ low)  # each step changes one half by a function of the other: invertible
    low = _mix(low ^ high)
    return np.stack([low, high], axis=1)


def _low_bits(count: np.ndarray) -> np.ndarray:
    """A word with the lowest ``count`` bits set (0 to 64)."""
    full = count >= np.uint64(64)
    return np.where(full, np.uint64(0xFFFFFFFFFFFFFFFF), (np.uint64(1) << np.where(full, np.uint64(0), count)) - np.uint64(1))


def _fixed_width_hashes(column: pa.Array) -> np.ndarray:
    width = column.type.bit_width // 8
    values = np.frombuffer(column.buffers()[1], dtype=f"<u{width}", count=len(column), offset=column.offset * width)
    wide = values.astype(np.uint64)
    return _nulls_marked(np.stack([_mix(wide), _mix(wide ^ np.uint64(width))], axis=1), column)


def _nulls_marked(hashes: np.ndarray, column: pa.Array) -> np.ndarray:
    """A null's slot holds any bytes: its hash is set apart from every value's."""
    if column.null_count:
        hashes = hashes.copy()
        hashes[~np.asarray(column.is_valid())] = _NULL
    return hashes


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of 64-bit values that spreads every input bit over every output bit."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)  # the one new array: the steps below work in place
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
        return z


def group_scope_keys(hashes: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Keys of group-filter scores for rows that reach a step, given in working-copy order.

    ``hashes`` are the rows' content hashes and ``groups`` their group numbers;
    a group's rows are contiguous, so its reached rows form one run.
    """
    n = len(groups)
    if n == 0:
        return np.zeros((0, 2), dtype=np.uint64)
    starts = np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1])))
    ends = np.append(starts[1:], n)
    run = np.repeat(np.arange(len(starts)), ends - starts)
    place = (np.arange(n) - starts[run]).astype(np.uint64)
    # Per half: each row's hash mixed with its place, summed over the group, mixed with the group's size.
    # Another row, another place or another count changes the sum by a pseudo-random amount.
    group_key = np.empty((len(starts), 2), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for half, salt in enumerate(_GROUP_SALTS):
            terms = _mix(np.ascontiguousarray(hashes[:, half], dtype=np.uint64) + (place + np.uint64(1)) * salt)
            total = np.add.reduceat(terms, starts)
            group_key[:, half] = _mix(total ^ ((ends - starts).astype(np.uint64) * salt))
    keys = group_key[run]
    with np.errstate(over="ignore"):
        keys[:, 1] += place * _PLACE
    return keys
