"""Vectorised statistics over the groups of a batch (all candidates of a question).

Filters that look at a question's whole answer distribution (voting, entropy)
share these kernels, so none of them loops over rows in Python.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def group_starts(ids: pa.Array) -> np.ndarray:
    """Row indices where a new group begins (always includes 0 for a non-empty batch)."""
    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # indices_nonzero, not a boolean to_numpy: that conversion goes through pyarrow's pandas bridge; and
    # to_numpy, not np.asarray, which copies value by value holding the GIL.
    changed = pc.indices_nonzero(pc.not_equal(ids.slice(1), ids.slice(0, n - 1))).to_numpy()
    return np.concatenate(([0], changed.astype(np.int64) + 1))


def group_index(ids: pa.Array) -> np.ndarray:
    """The group number (0, 1, ...) of every row, for contiguous groups."""
    return group_numbers(group_starts(ids), len(ids))


def group_numbers(starts: np.ndarray, num_rows: int) -> np.ndarray:
    """The group number (0, 1, ...) of every row, from the rows where groups start (:func:`group_starts`)."""
    index = np.zeros(num_rows, dtype=np.int64)
    index[starts[1:]] = 1
    return np.cumsum(index)


def warn_repeated_samples(batch: pa.RecordBatch) -> None:
    """Warn when rows of one question share a ``sample`` number: duplicates by the row contract, each voting.

    A doubled input file (two runs of ``generate`` concatenated) is the usual
    cause; it would silently give its answers twice the votes.
    """
    if "sample" not in batch.schema.names or batch.num_rows < 2:
        return
    samples = batch.column("sample")
    given = np.flatnonzero(samples.is_valid().to_numpy(zero_copy_only=False))
    groups = group_index(batch.column("id"))[given]
    numbers = pc.cast(samples, pa.int64()).to_numpy(zero_copy_only=False)[given]
    same_group = groups[1:] == groups[:-1]
    if not (same_group & (numbers[1:] <= numbers[:-1])).any():  # numbered upwards in each question, as usual
        return
    order = np.lexsort((numbers, groups))  # rows of a question by sample number: a repeat sits next to its twin
    same = (groups[order][1:] == groups[order][:-1]) & (numbers[order][1:] == numbers[order][:-1])
    if not same.any():
        return
    repeated = np.zeros(len(order), dtype=bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    first = order[int(np.argmax(same))]
    first_id = batch.column("id")[int(given[first])].as_py()
    warnings.warn(
        f"{int(repeated.sum())} rows share their (id, sample) with another row (first: id '{first_id}', sample "
        f"{int(numbers[first])}); each of them votes", UserWarning, stacklevel=2,
    )


@dataclass(frozen=True)
class AnswerDistribution:
    """How often each parsable answer occurs in each group of a batch.

    One entry per distinct (group, answer): ``group``, ``code`` (index into
    ``answers``), ``mass`` (count, or summed vote weight) and ``first`` (row of
    its first occurrence, for tie-breaking).
    """

    row_group: np.ndarray
    row_code: np.ndarray
    answers: pa.Array
    group: np.ndarray
    code: np.ndarray
    mass: np.ndarray
    first: np.ndarray
    num_groups: int

    @classmethod
    def of(cls, ids: pa.Array, answers: pa.Array, weights: np.ndarray | None = None) -> AnswerDistribution:
        row_group = group_index(ids)
        num_groups = int(row_group[-1]) + 1 if len(row_group) else 0
        if isinstance(answers, pa.ChunkedArray):
            answers = answers.combine_chunks()
        encoded = pc.dictionary_encode(answers)
        row_code = encoded.indices.fill_null(-1).to_numpy().astype(np.int64)
        rows = np.flatnonzero(row_code >= 0)
        width = max(len(encoded.dictionary), 1)
        keys = row_group[rows] * width + row_code[rows]
        unique, first_index, inverse = np.unique(keys, return_index=True, return_inverse=True)
        mass = np.bincount(inverse, weights=None if weights is None else weights[rows], minlength=len(unique))
        return cls(
            row_group=row_group,
            row_code=row_code,
            answers=encoded.dictionary,
            group=unique // width,
            code=unique % width,
            mass=mass.astype(np.float64),
            first=rows[first_index],
            num_groups=num_groups,
        )

    def group_total(self) -> np.ndarray:
        """Total mass of parsable answers per group."""
        return np.bincount(self.group, weights=self.mass, minlength=self.num_groups)

    def majority(self, tie_keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per group: the winning answer's code (-1 if none parsable) and its mass.

        Ties go to the answer that appears first in the group, or with
        ``tie_keys`` (one per entry) to the tied entry with the lowest key.
        """
        order = np.lexsort((self.first if tie_keys is None else tie_keys, -self.mass, self.group))
        winners = order[np.concatenate(([True], self.group[order][1:] != self.group[order][:-1]))] if len(order) else order
        code = np.full(self.num_groups, -1, dtype=np.int64)
        mass = np.zeros(self.num_groups, dtype=np.float64)
        code[self.group[winners]] = self.code[winners]
        mass[self.group[winners]] = self.mass[winners]
        return code, mass

    def entropy(self) -> np.ndarray:
        """Per group: Shannon entropy (nats) of the answer distribution; NaN when nothing parses."""
        total = self.group_total()
        with np.errstate(divide="ignore", invalid="ignore"):
            p = self.mass / total[self.group]
            h = np.bincount(self.group, weights=-p * np.log(p), minlength=self.num_groups)
        h[total == 0] = np.nan
        return h

    def answer_of(self, codes: np.ndarray) -> pa.Array:
        """Answer strings for codes, null where the code is -1."""
        valid = codes >= 0
        return pc.take(self.answers, pa.array(np.where(valid, codes, 0), mask=~valid))
