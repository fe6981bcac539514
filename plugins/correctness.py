"""``correctness`` (Fine-tune-CoT): keep rows whose answer equals the reference.

The incorrect rows are the negative set that Dust into Gold trains on; they
go to ``rejected.parquet`` with ``dropped_by = correctness`` (and to their own
file with the recipe's ``rejected_by_step: true``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from curator import Filter, FilterContext, RegisterFilter, Selection, hookimpl


@dataclass(kw_only=True)
class Correctness(Filter):
    name = "correctness"
    columns = ("correct",)
    requires = ("reference",)
    scope = "row"
    score_meaning = {"correct": "boolean"}

    def score(self, batch: pa.RecordBatch, context: FilterContext) -> dict[str, pa.Array]:
        return {"correct": context.task.equal_batch(batch.column("answer"), batch.column("reference"))}

    def select(self, batch: pa.RecordBatch, stats: Mapping[str, Any]) -> Selection:
        return Selection(keep=batch.column("correct"))

    def reads(self, batch: pa.RecordBatch) -> tuple[str, ...]:
        return ("answer", "reference")


@hookimpl
def register_filters(register: RegisterFilter) -> None:
    register(Correctness)
