"""Questions to generate for, or to evaluate on: ``id``, ``question`` and an optional gold answer.

Any format :class:`curator.io.Source` reads (JSONL, Parquet, Arrow, a saved
Hugging Face dataset folder, an ``hf:`` dataset with its config and split,
streamed), through that same reader with ``question`` as
the one required column, so errors name the line or row; ids and answers
may be numbers. The gold answer is ``reference`` or, failing that,
``answer`` (GSM8K's raw solutions end in ``#### N``), normalised by the
task. Without an ``id`` column each question gets one derived from its text,
so the same file always yields the same ids, a resumed run finds its own
rows, and reordering or appending questions keeps them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator.errors import CuratorError
from curator.hf import DatasetSource, dataset_input
from curator.io import Source, row_name, row_place
from curator.task import Task

REFERENCE_COLUMNS = ("reference", "answer")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    reference: str | None


def question_id(text: str) -> str:
    """The id of a question without one: a short hash of its text."""
    return hashlib.sha1(text.encode()).hexdigest()[:12]


class QuestionFile:
    """A question file, read batch by batch."""

    def __init__(self, path: str | Path, task: Task, *, config: str | None = None, split: str | None = None) -> None:
        self.source = Source.open(dataset_input(path, config, split), required=("question",))
        self.task = task
        first = next(self.source.checked_batches(), None)
        self.columns: list[str] = [] if first is None else first.schema.names
        self.reference_column = next((c for c in REFERENCE_COLUMNS if c in self.columns), None)

    @property
    def has_reference(self) -> bool:
        return self.reference_column is not None

    def count(self) -> int:
        """How many questions (reads a JSONL or Arrow file once; Parquet from its footer, a dataset from its card)."""
        if self.source.format == "parquet":
            return pq.ParquetFile(self.source.path).metadata.num_rows
        if isinstance(self.source, DatasetSource) and (known := self.source.num_rows()) is not None:
            return known
        return sum(batch.num_rows for batch in self.source.iter_batches())

    def __iter__(self) -> Iterator[Question]:
        path = self.source.path
        seen: dict[str, int] = {}
        row = 0
        for batch in self.source.checked_batches():
            questions = batch.column("question")
            ids = _ids(batch, path, row)
            references = self._references(batch)
            for i, (qid, text) in enumerate(zip(ids, questions.to_pylist())):
                row += 1
                if not text or not text.strip():
                    raise CuratorError(f"{row_place(path, row)}: column 'question' is empty")
                if qid is None:
                    qid = question_id(text)
                    seen[qid] = seen.get(qid, 0) + 1
                    qid = qid if seen[qid] == 1 else f"{qid}-{seen[qid]}"
                elif qid in seen:
                    raise CuratorError(f"{row_place(path, row)}: id '{qid}' already used on {row_name(path, seen[qid])}")
                else:
                    seen[qid] = row
                yield Question(qid, text, None if references is None else references[i])

    def _references(self, batch: pa.RecordBatch) -> list[str | None] | None:
        if self.reference_column is None:
            return None
        return self.task.normalize_reference_batch(batch.column(self.reference_column)).to_pylist()


def _ids(batch: pa.RecordBatch, path: Path, first_row: int) -> list[str | None]:
    """The batch's ids (text: the reader writes numbers out), or Nones to derive them from the text."""
    if "id" not in batch.schema.names:
        return [None] * batch.num_rows
    column = batch.column("id")
    if column.null_count == batch.num_rows:  # an id column with nothing in it: none given
        return [None] * batch.num_rows
    if column.null_count:
        row = first_row + 1 + int(pc.index(pc.is_null(column), True).as_py())
        raise CuratorError(f"{row_place(path, row)}: column 'id' is null")
    return column.to_pylist()
