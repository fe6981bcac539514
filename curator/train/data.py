"""From a curated table to tokenised samples: read, filter with ``--where``, weight, encode.

Rows of weight 0 are removed here, before batching. Left in, they would add
nothing to the numerator of the loss but their tokens to its denominator and
their slots to the batch plan, so "weight 0" would still change the adapter;
removed, a weight-0 row is exactly a row that was never there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curator.errors import CuratorError
from curator.formats import Example
from curator.io import Source, row_place

IGNORE = -100
"""Target id of a position that carries no loss (prompt, padding, the last input token)."""


@dataclass
class Sample:
    """One tokenised example: model inputs, next-token targets and what the loss needs."""

    input_ids: np.ndarray
    targets: np.ndarray
    weight: float = 1.0
    count: int = 0
    values: dict[str, float] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.input_ids)


@dataclass
class TrainingTable:
    """The rows a run trains on, and what became of the others (for the manifest)."""

    table: pa.Table
    weights: np.ndarray
    fingerprint: str
    rows_read: int
    rows_filtered: int
    rows_zero_weight: int
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """The 1-based row of the file each row of ``table`` comes from, for errors."""


def read_training_table(path: str, where: list[str], columns: tuple[str, ...]) -> TrainingTable:
    """Read ``path`` whole (training needs random access), apply ``where``, drop weight-0 rows."""
    source = Source.open(path)
    table = source.read_table()
    if table.num_rows == 0:
        raise CuratorError(f"{path}: no rows")
    rows_read = table.num_rows
    chosen = np.ones(rows_read, dtype=bool)
    for clause in where:
        chosen &= pc.fill_null(where_mask(table, clause, path), False).to_numpy(zero_copy_only=False)
    rows_filtered = rows_read - int(chosen.sum())
    for column in columns:
        if column not in table.column_names:
            raise CuratorError(f"{path}: missing column '{column}' (has: {', '.join(table.column_names)})")
    weights = row_weights(table, path)  # over every row, so an error names the row of the file
    rows = np.flatnonzero(chosen & (weights > 0))
    table, weights = table.take(pa.array(rows)), weights[rows]
    rows_zero_weight = rows_read - rows_filtered - table.num_rows
    if table.num_rows == 0:
        raise CuratorError(f"{path}: no rows left to train on after --where and weight-0 rows")
    return TrainingTable(table, weights, source.fingerprint(), rows_read, rows_filtered, rows_zero_weight, rows + 1)


def where_mask(table: pa.Table, clause: str, path: str) -> pa.ChunkedArray:
    """``COLUMN=VALUE`` / ``COLUMN!=VALUE`` (``null`` matches missing values) as a row mask."""
    negate = "!=" in clause
    column, sep, text = clause.partition("!=" if negate else "=")
    column, text = column.strip(), text.strip()
    if not sep or not column:
        raise CuratorError(f"--where '{clause}': expected COLUMN=VALUE or COLUMN!=VALUE")
    if column not in table.column_names:
        raise CuratorError(
            f"--where '{clause}': {path} has no column '{column}' (has: {', '.join(table.column_names)})"
        )
    array = table.column(column)
    if text.lower() in ("null", "none"):
        mask = pc.is_null(array)
    else:
        try:
            value = pa.scalar(text).cast(array.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise CuratorError(
                f"--where '{clause}': '{text}' is not a value of column '{column}' ({array.type})"
            ) from None
        mask = pc.fill_null(pc.equal(array, value), False)
    return pc.invert(mask) if negate else mask


def row_weights(table: pa.Table, path: str, first_row: int = 1) -> np.ndarray:
    """The ``weight`` column as float32, missing column or null meaning 1.0 (``first_row``: the table's, in the file)."""
    if "weight" not in table.column_names:
        return np.ones(table.num_rows, dtype=np.float32)
    try:
        column = pc.cast(table.column("weight"), pa.float32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise CuratorError(
            f"{path}: column 'weight' must be numeric, got {table.column('weight').type}"
        ) from None
    weights = pc.fill_null(column, 1.0).to_numpy()
    if not np.isfinite(weights).all() or (weights < 0).any():
        row = int(np.flatnonzero(~np.isfinite(weights) | (weights < 0))[0]) + first_row
        raise CuratorError(f"{row_place(Path(path), row)}: column 'weight' must be a finite number >= 0")
    return weights.astype(np.float32)


def encode_examples(
    examples: list[Example],
    weights: np.ndarray,
    tokenizer: Any,
    *,
    values: dict[str, np.ndarray] | None = None,
    max_length: int,
    loss_on_prompt: bool,
    prompt_special_tokens: bool = True,
) -> tuple[list[Sample], int]:
    """Tokenise prompt and completion apart, so the boundary between them is exact.

    ``values`` are per-row numbers an objective needs (``nce_beta``), carried
    onto each sample. Returns the samples and how many were truncated. Inputs drop the last
    token (EOS) and targets drop the first, so every input position predicts
    the next token of its own sample and none predicts across a packing seam.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise CuratorError(
            "the model's tokenizer has no EOS token; the trainer appends one to every completion"
        )
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=prompt_special_tokens)["input_ids"]
    completions = tokenizer([e.completion for e in examples], add_special_tokens=False)["input_ids"]
    values = values or {}
    samples, truncated = [], 0
    for row, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        if eos not in completion:  # a chat template may already close the turn with it
            completion = [*completion, eos]
        tokens = np.asarray(prompt + completion, dtype=np.int64)
        learn = np.zeros(len(tokens), dtype=bool)
        learn[0 if loss_on_prompt else len(prompt) :] = True
        if len(tokens) > max_length + 1:
            tokens, learn, truncated = tokens[: max_length + 1], learn[: max_length + 1], truncated + 1
        targets = np.where(learn[1:], tokens[1:], IGNORE)
        count = int(learn[1:].sum())
        if count:
            extras = {name: float(column[row]) for name, column in values.items()}
            samples.append(Sample(tokens[:-1], targets, float(weights[row]), count, extras))
    return samples, truncated
