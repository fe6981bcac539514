"""What a cached score is keyed by: a 128-bit hash of its row's content, or of its group's.

The working copy stores, beside every row, a hash of the values of all its
input columns (``answer`` as the task parsed it); the columns' names and
types go into the step's cache key (:func:`schema_digest`). A filter whose scores depend on the row alone
(``scope = "row"``) keys them by that hash. A group filter's scores depend on
which rows of the group reach it, so they are keyed by the hash of those
rows' hashes, in order, and the row's place among them: a score is reused
only where the filter would be given exactly the same rows again.

Keys are ``(n, 2)`` uint64 arrays; 128 bits make a collision between two
different rows of any real dataset vanishingly unlikely.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEY_BYTES = 16
_PLACE = np.uint64(0x9E3779B97F4A7C15)  # odd, so distinct places in a group give distinct keys


def schema_digest(schema: pa.Schema) -> str:
    """The columns' names and types: the same values under other names are other rows."""
    described = [(field.name, str(field.type)) for field in schema]
    return hashlib.blake2b(json.dumps(described).encode(), digest_size=16).hexdigest()


def row_hashes(batch: pa.RecordBatch) -> np.ndarray:
    """The content hash of every row, from an unambiguous encoding of each value.

    Each value is written as ``<byte length>:<bytes>`` (a null as ``-``), so no
    two different rows encode alike whatever the values contain.
    """
    fields = []
    for column in batch.columns:
        values = _as_binary(column)
        length = pc.cast(pc.cast(pc.binary_length(values), pa.string()), pa.binary())
        fields.append(pc.fill_null(pc.binary_join_element_wise(length, values, b":"), b"-"))
    encoded = pc.binary_join_element_wise(*fields, b"") if len(fields) > 1 else fields[0]
    blake = hashlib.blake2b
    digests = b"".join([blake(v, digest_size=KEY_BYTES).digest() for v in encoded.to_pylist()])
    return np.frombuffer(digests, dtype="<u8").reshape(-1, 2)


def _as_binary(column: pa.Array) -> pa.Array:
    kind = column.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return column.cast(pa.binary())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.cast(pa.string()).cast(pa.binary())
    try:
        return pc.cast(pc.cast(column, pa.string()), pa.binary())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # nested values: canonical JSON
        texts = [None if v is None else json.dumps(v, sort_keys=True, default=str) for v in column.to_pylist()]
        return pa.array(texts, pa.string()).cast(pa.binary())


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
    raw = memoryview(np.ascontiguousarray(hashes, dtype="<u8").tobytes())
    blake = hashlib.blake2b
    digests = b"".join(
        [blake(raw[s * KEY_BYTES : e * KEY_BYTES], digest_size=KEY_BYTES).digest()
         for s, e in zip(starts.tolist(), ends.tolist())]
    )
    group_key = np.frombuffer(digests, dtype="<u8").reshape(-1, 2)
    run = np.repeat(np.arange(len(starts)), ends - starts)
    keys = group_key[run].copy()
    keys[:, 1] += (np.arange(n) - starts[run]).astype(np.uint64) * _PLACE
    return keys
