"""A generation run's output folder, written so that a killed run can continue.

Finished groups (all samples of a question) are appended as Arrow IPC part
files under ``.progress/``, each written under a temporary name and renamed,
so a part is either whole or absent. A question is done when its id is in a
part or in ``candidates.parquet`` with the same question text: a question
edited in place since is generated again, as ``build`` re-scores rows whose
content changed. Writing whole groups keeps each question's samples from one
request, which is what makes a resumed run equal an uninterrupted one on a
deterministic backend.

At the end the parts and any earlier ``candidates.parquet`` are merged into a
new ``candidates.parquet`` holding the questions of the input as it is now,
ordered by input position then sample, so the result does not depend on the
order answers arrived in. The latest copy of a group wins (a regenerated
question replaces its old samples); a crash between writing the result and
deleting the parts leaves a group in both, identical, so that is harmless.
Gold answers are taken from the input at the end, so correcting one needs no
new samples.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from curator.errors import CuratorError
from curator.outputs import atomic_path, write_json

PROGRESS = ".progress"
CANDIDATES = "candidates.parquet"
FAILURES = "failures.jsonl"


def question_digest(text: str) -> bytes:
    """What a stored group is checked against: a short hash of the question it answers."""
    return hashlib.blake2b(text.encode(), digest_size=12).digest()


class CandidateStore:
    """Parts, failures and cumulative usage of one output folder."""

    def __init__(self, output: str | Path, settings: Mapping[str, Any]) -> None:
        self.output = Path(output)
        self.progress = self.output / PROGRESS
        self.settings = dict(settings)
        self.usage: dict[str, int] = {}
        self._next_part = 0

    @property
    def candidates_path(self) -> Path:
        return self.output / CANDIDATES

    def open(self) -> dict[str, bytes]:
        """Check the folder holds this run (or nothing); the questions done, id to :func:`question_digest`."""
        self.progress.mkdir(parents=True, exist_ok=True)
        settings_path = self.progress / "settings.json"
        if settings_path.exists():
            self._check_settings(json.loads(settings_path.read_text()))
        elif self.candidates_path.exists():
            raise CuratorError(f"{self.output}: holds a {CANDIDATES} not written by this command; use a new --output")
        else:
            write_json(settings_path, self.settings)
        for stale in self.progress.glob(".*.tmp"):
            stale.unlink()
        usage_path = self.progress / "usage.json"
        self.usage = json.loads(usage_path.read_text()) if usage_path.exists() else {}
        parts = self._parts()
        self._next_part = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0
        done: dict[str, bytes] = {}
        for table in self._tables(columns=["id", "question", "sample"]):  # later copies override earlier ones
            firsts = table.filter(pc.equal(table["sample"], 0))
            for qid, text in zip(firsts["id"].to_pylist(), firsts["question"].to_pylist()):
                done[qid] = question_digest(text)
        return done

    def _check_settings(self, previous: Mapping[str, Any]) -> None:
        changed = [k for k in sorted(set(previous) | set(self.settings)) if previous.get(k) != self.settings.get(k)]
        if changed:
            detail = ", ".join(f"{k}: {previous.get(k)!r} then, {self.settings.get(k)!r} now" for k in changed)
            raise CuratorError(f"{self.output}: holds a run with other settings ({detail}); use a new --output")

    def write_part(self, table: pa.Table) -> None:
        """Append finished groups, durably: whole or not at all."""
        path = self.progress / f"part-{self._next_part:06d}.arrow"
        with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as out:
            out.write_table(table)
        self._next_part += 1

    def write_failures(self, records: list[dict[str, Any]]) -> None:
        with atomic_path(self.output / FAILURES) as tmp:
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    def save_usage(self, usage: Mapping[str, int]) -> None:
        """The token usage of every run into this folder so far."""
        write_json(self.progress / "usage.json", dict(usage))

    def finalize(
        self,
        order: Sequence[str],
        schema: pa.Schema,
        *,
        drop: set[str] = frozenset(),  # type: ignore[assignment]
        references: Sequence[str | None] | None = None,
    ) -> pa.Table:
        """Merge everything done into ``candidates.parquet``, by input order then sample.

        Only questions in ``order`` (the input now) are kept, without the ids
        in ``drop`` (edited questions whose new samples failed: their old ones
        answer another question). ``references`` (one per id of ``order``)
        replaces the stored gold answers.
        """
        kept: list[pa.Table] = []
        seen = pa.array(sorted(drop), pa.string())
        for table in reversed(list(self._tables())):  # newest first: the latest copy of a group wins
            if len(seen):
                table = table.filter(pc.invert(pc.is_in(table["id"], value_set=seen)))
            kept.append(_conform(table, schema))
            seen = pa.concat_arrays([seen, pc.unique(table["id"])])
        merged = pa.concat_tables(kept) if kept else schema.empty_table()
        position = pc.index_in(merged["id"], value_set=pa.array(order, pa.string()))
        merged = merged.append_column("__position", position).filter(pc.is_valid(position))
        if references is not None and "reference" in schema.names:
            gold = pc.take(pa.array(references, pa.string()), merged["__position"])
            merged = merged.set_column(schema.get_field_index("reference"), "reference", gold)
        merged = merged.sort_by(
            [("__position", "ascending"), ("id", "ascending"), ("sample", "ascending")]
        ).drop_columns(["__position"])
        with atomic_path(self.candidates_path) as tmp:
            pq.write_table(merged, tmp)
        for part in self._parts():
            part.unlink()
        return merged

    def _parts(self) -> list[Path]:
        return sorted(self.progress.glob("part-*.arrow"))

    def _tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """The earlier result first, then the parts in the order they were written."""
        if self.candidates_path.exists():
            yield pq.read_table(self.candidates_path, columns=columns)
        for part in self._parts():
            with pa.OSFile(str(part)) as source:
                table = ipc.open_file(source).read_all()
            yield table if columns is None else table.select(columns)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``: a column added since an earlier version wrote it (``finish_reason``) is null."""
    for name in schema.names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, schema.field(name).type))
    return table.select(schema.names).cast(schema)
