"""From a curated table to tokenised samples: read, filter with ``--where``, weight, encode.

Rows of weight 0 are removed here, before batching. Left in, they would add
nothing to the numerator of the loss but their tokens to its denominator and
their slots to the batch plan, so "weight 0" would still change the adapter;
removed, a weight-0 row is exactly a row that was never there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curator.errors import CuratorError
from curator.formats import Example
from curator.hf import dataset_input
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
    """The rows a run trains on, and what became of the others (for the manifest).

    Rows may come from several files (``--data`` repeated, or a build
    folder's curated and rejected rows); ``origins`` names them and
    :meth:`locate` says which file and row of it a training row is.
    """

    table: pa.Table
    weights: np.ndarray
    fingerprint: str
    rows_read: int
    rows_filtered: int
    rows_zero_weight: int
    origins: tuple[str, ...] = ()
    file_of: np.ndarray | None = None
    row_of: np.ndarray | None = None

    @property
    def label(self) -> str:
        """The files, for a message about all of them."""
        return " + ".join(self.origins) or "the training data"

    def locate(self, row: int) -> str:
        """``FILE:LINE`` (JSONL) or ``FILE: row N`` (1-based, in the file as read) of training row ``row``."""
        if self.file_of is None or self.row_of is None:
            return f"{self.label}: row {row + 1}"
        return row_place(Path(self.origins[self.file_of[row]]), int(self.row_of[row]) + 1)


BUILD_OUTPUTS = ("curated.parquet", "rejected.parquet")
"""What a build folder holds, in the order ``--data DIR`` reads it when an objective takes both."""


def expand_paths(paths: str | Sequence[str], build_files: tuple[str, ...]) -> list[str]:
    """Files to read: a build's output folder stands for ``build_files`` in it, any other path for itself."""
    out = []
    for path in [paths] if isinstance(paths, str) else paths:
        folder = Path(path)
        if not (folder / BUILD_OUTPUTS[0]).is_file():
            out.append(str(path))
            continue
        if not (folder / "manifest.json").is_file():
            raise CuratorError(f"{folder}: a build folder without manifest.json (the build did not finish)")
        out += [str(folder / name) for name in build_files]
    return out


def read_training_table(
    paths: str | Sequence[str],
    where: list[str],
    columns: tuple[str, ...],
    build_files: tuple[str, ...] = BUILD_OUTPUTS[:1],
    *,
    dataset_config: str | None = None,
    split: str | None = None,
) -> TrainingTable:
    """Read every file whole (training needs random access), apply ``where`` to each, drop weight-0 rows.

    Several files are concatenated in order; a column missing from some of
    them is null there (a build's rejected rows lack the scores of the steps
    they never reached). A path may be ``hf:NAME`` with ``dataset_config``
    and ``split`` (GSM8K's solutions, MATH's, a chat dataset's answers become
    the rationales).
    """
    files = expand_paths(paths, build_files)
    tables, weights, file_of, row_of, fingerprints = [], [], [], [], []
    rows_read = rows_filtered = 0
    for number, path in enumerate(files):
        source = Source.open(dataset_input(path, dataset_config, split, "--data-config/--split"))
        table = source.read_table()
        if table.num_rows == 0:
            raise CuratorError(f"{path}: no rows")
        read = table.num_rows
        chosen = np.ones(read, dtype=bool)
        for clause in where:
            chosen &= where_mask(table, clause, path)
        for column in columns:
            if column not in table.column_names:
                has = ", ".join(table.column_names)
                raise CuratorError(f"{path}: missing column '{column}' (has: {has})")
        weight = row_weights(table, path)  # over every row, so an error names the row of the file
        rows_read, rows_filtered = rows_read + read, rows_filtered + read - int(chosen.sum())
        kept = np.flatnonzero(chosen & (weight > 0))
        tables.append(table.take(pa.array(kept)))
        weights.append(weight[kept])
        row_of.append(kept)
        file_of.append(np.full(len(kept), number))
        fingerprints.append(source.fingerprint())
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    if table.num_rows == 0:
        raise CuratorError(f"{' + '.join(files)}: no rows left to train on after --where and weight-0 rows")
    joined = "+".join(fingerprints).encode()
    fingerprint = fingerprints[0] if len(files) == 1 else hashlib.blake2b(joined, digest_size=16).hexdigest()
    return TrainingTable(
        table,
        np.concatenate(weights),
        fingerprint,
        rows_read,
        rows_filtered,
        rows_read - rows_filtered - table.num_rows,
        tuple(files),
        np.concatenate(file_of),
        np.concatenate(row_of),
    )


def where_mask(table: pa.Table, clause: str, path: str) -> np.ndarray:
    """``COLUMN=VALUE`` / ``COLUMN!=VALUE`` (``null`` matches missing values) as a boolean row mask."""
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
    return (pc.invert(mask) if negate else mask).to_numpy(zero_copy_only=False)


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

    Special tokens (a chat template's ``<|im_start|>``, a BOS) never carry
    loss, even with ``loss_on_prompt``; the one exception is the EOS that
    closes the completion (appended, or the template's own end of turn, after
    which the template's trailing text is dropped).

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
    special = np.asarray(sorted(set(getattr(tokenizer, "all_special_ids", ())) | {eos}), dtype=np.int64)
    values = values or {}
    samples, truncated = [], 0
    for row, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        # A chat template closes the turn with EOS itself: what follows it is the template's, not the model's.
        completion = completion[: completion.index(eos) + 1] if eos in completion else [*completion, eos]
        tokens = np.asarray(prompt + completion, dtype=np.int64)
        learn = np.zeros(len(tokens), dtype=bool)
        learn[0 if loss_on_prompt else len(prompt) :] = True
        learn &= ~np.isin(tokens, special)  # a template's markers are never learnt...
        learn[-1] = True  # ...except the EOS that ends the completion, which teaches the model to stop
        if len(tokens) > max_length + 1:
            tokens, learn, truncated = tokens[: max_length + 1], learn[: max_length + 1], truncated + 1
        targets = np.where(learn[1:], tokens[1:], IGNORE)
        count = int(learn[1:].sum())
        if count:
            extras = {name: float(column[row]) for name, column in values.items()}
            samples.append(Sample(tokens[:-1], targets, float(weights[row]), count, extras))
    return samples, truncated
