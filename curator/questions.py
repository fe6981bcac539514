"""Questions to generate for: ``id``, ``question`` and an optional gold answer.

Any format :class:`curator.io.Source` reads (JSONL, Parquet, Arrow, a saved
Hugging Face dataset folder); JSONL is read here, line by line, because a
question file has none of the candidate columns that reader insists on, and
its ids may be numbers. The gold answer is ``reference`` or, failing
that, ``answer`` (GSM8K's raw solutions end in ``#### N``), normalised by the
task. Without an ``id`` column each question gets one derived from its text,
so the same file always yields the same ids, a resumed run finds its own
rows, and reordering or appending questions keeps them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator.errors import CuratorError
from curator.io import Source
from curator.task import Task

REFERENCE_COLUMNS = ("reference", "answer")
JSONL_BATCH = 4096


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

    def __init__(self, path: str | Path, task: Task) -> None:
        self.source = Source.open(path)
        self.task = task
        first = next(self._batches(), None)
        self.columns: list[str] = [] if first is None else first.schema.names
        if first is not None and "question" not in self.columns:
            raise CuratorError(f"{self.source.path}: no 'question' column (has: {', '.join(self.columns)})")
        self.reference_column = next((c for c in REFERENCE_COLUMNS if c in self.columns), None)

    @property
    def has_reference(self) -> bool:
        return self.reference_column is not None

    def count(self) -> int:
        """How many questions (reads a JSONL or Arrow file once; Parquet from its footer)."""
        if self.source.format == "parquet":
            return pq.ParquetFile(self.source.path).metadata.num_rows
        return sum(batch.num_rows for batch in self._batches())

    def __iter__(self) -> Iterator[Question]:
        path = self.source.path
        seen: dict[str, int] = {}
        row = 0
        for batch in self._batches():
            questions = batch.column("question")
            if not pa.types.is_string(questions.type) and not pa.types.is_large_string(questions.type):
                raise CuratorError(f"{path}: column 'question' must be text, got {questions.type}")
            ids = _ids(batch, path, row)
            references = self._references(batch)
            for i, (qid, text) in enumerate(zip(ids, questions.to_pylist())):
                row += 1
                if not text or not text.strip():
                    raise CuratorError(f"{path}: row {row}: column 'question' is empty")
                if qid is None:
                    qid = question_id(text)
                    seen[qid] = seen.get(qid, 0) + 1
                    qid = qid if seen[qid] == 1 else f"{qid}-{seen[qid]}"
                elif qid in seen:
                    raise CuratorError(f"{path}: row {row}: id '{qid}' already used on row {seen[qid]}")
                else:
                    seen[qid] = row
                yield Question(qid, text, None if references is None else references[i])

    def _batches(self) -> Iterator[pa.RecordBatch]:
        if self.source.format != "jsonl":
            yield from self.source.iter_batches()
            return
        path = self.source.path
        rows: list[dict[str, object]] = []
        keys: list[str] | None = None
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise CuratorError(f"{path}:{number}: invalid JSON ({exc})") from None
                if not isinstance(record, dict):
                    raise CuratorError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
                keys = keys or [k for k in ("id", "question", *REFERENCE_COLUMNS) if k in record] or list(record)
                rows.append({k: _text(record.get(k), path, number, k) for k in keys})
                if len(rows) == JSONL_BATCH:
                    yield pa.RecordBatch.from_pylist(rows)
                    rows = []
        if rows:
            yield pa.RecordBatch.from_pylist(rows)

    def _references(self, batch: pa.RecordBatch) -> list[str | None] | None:
        if self.reference_column is None:
            return None
        column = batch.column(self.reference_column)
        if not pa.types.is_string(column.type):
            column = pc.cast(column, pa.string())
        return self.task.normalize_reference_batch(column).to_pylist()


def _text(value: object, path: Path, line: int, key: str) -> str | None:
    """A JSONL value as text: strings as they are, numbers written out, nothing else."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise CuratorError(f"{path}:{line}: column '{key}' must be text or a number, got {type(value).__name__}")


def _ids(batch: pa.RecordBatch, path: Path, first_row: int) -> list[str | None]:
    """The batch's ids as strings, or Nones to derive them from the text."""
    if "id" not in batch.schema.names:
        return [None] * batch.num_rows
    column = batch.column("id")
    if column.null_count == batch.num_rows:  # JSONL without ids reads as an all-null column
        return [None] * batch.num_rows
    if column.null_count:
        row = first_row + 1 + int(pc.index(pc.is_null(column), True).as_py())
        raise CuratorError(f"{path}: row {row}: column 'id' is null")
    try:
        return pc.cast(column, pa.string()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise CuratorError(f"{path}: column 'id' must be text or integers, got {column.type}") from exc
