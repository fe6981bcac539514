"""The row schema: which columns a candidate table has, and their types."""

from __future__ import annotations

import pyarrow as pa

REQUIRED = ("id", "question", "rationale")
"""Columns every candidate table must have, never null."""

OPTIONAL: dict[str, pa.DataType] = {
    "answer": pa.string(),
    "reference": pa.string(),
    "sample": pa.int32(),
    "model": pa.string(),
    "logprob": pa.float64(),
    "n_tokens": pa.int32(),
}
"""Optional input columns and the type each is cast to."""

TYPES: dict[str, pa.DataType] = {name: pa.string() for name in REQUIRED} | OPTIONAL
"""Every column of the row schema, in its order, with its type."""
