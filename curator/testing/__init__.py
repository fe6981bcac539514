"""Helpers for testing filters, built-in or third-party.

``make_candidates`` builds a candidate table from answers per question, and
``run_filter`` runs one filter through the real engine (caching, batching,
fit and select included) and returns every row with its scores and verdict,
in input order. The pytest plugin in :mod:`curator.testing.fixtures` offers
them as fixtures too.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curator.build.recipe import BATCH_ROWS
from curator.filter import Filter
from curator.hookspecs import RegisterFilter, hookimpl
from curator.plugins import Registry, get_registry, registry_for

ORDER = "__input_order"


def make_candidates(
    answers: Sequence[Sequence[str | None]],
    *,
    references: Sequence[str | None] | None = None,
    rationales: Sequence[Sequence[str]] | None = None,
    **columns: Sequence[Any],
) -> pa.Table:
    """A candidate table: one group per question, one row per answer.

    Rationales default to ``"... The answer is {answer}."`` (or no answer
    when it is None); extra keyword columns are flat per-row sequences.
    """
    rows: dict[str, list[Any]] = {"id": [], "question": [], "rationale": [], "answer": [], "sample": []}
    if references is not None:
        rows["reference"] = []
    for q, group in enumerate(answers):
        for s, answer in enumerate(group):
            rows["id"].append(f"q{q}")
            rows["question"].append(f"Question {q}?")
            text = rationales[q][s] if rationales else (
                f"Some reasoning. The answer is {answer}." if answer is not None else "I am not sure."
            )
            rows["rationale"].append(text)
            rows["answer"].append(answer)
            rows["sample"].append(s)
            if references is not None:
                rows["reference"].append(references[q])
    table = pa.table({k: pa.array(v, pa.int32() if k == "sample" else pa.string()) for k, v in rows.items()})
    for name, values in columns.items():
        table = table.append_column(name, pa.array(values))
    return table


def run_filter(
    filter: str | type[Filter] | Filter,
    table: pa.Table,
    *,
    task: str = "gsm8k",
    registry: Registry | None = None,
    base_dir: str | Path | None = None,
    batch_rows: int = BATCH_ROWS,
    **options: Any,
) -> pa.Table:
    """Run one filter step over ``table`` with the engine; all rows back, in input order.

    ``filter`` is a registered name, a Filter class (registered for the run)
    or an instance (its options are used). Answers and references are
    canonicalised by ``task`` as in a real build, so letters need
    ``task="multiple_choice"`` and yes/no ``task="yes_no"``. The result has the filter's score
    columns, ``keep``, ``weight`` and ``dropped_by``; the build's manifest is
    in the table's schema metadata under ``b"manifest"``.
    """
    from curator.build import parse_recipe, run_build

    if isinstance(filter, Filter):
        options = {**filter.options(), **options}
        filter = type(filter)
    if isinstance(filter, type):
        registry = registry or _registry_with(filter)
        filter = filter.name
    with tempfile.TemporaryDirectory(prefix="curator-test-") as tmp:
        root = Path(tmp)
        pq.write_table(table.append_column(ORDER, pa.array(range(table.num_rows), pa.int64())), root / "in.parquet")
        recipe = parse_recipe(
            {
                "input": str(root / "in.parquet"),
                "task": task,
                "filters": [{filter: dict(options)}],
                "output": str(root / "out"),
                "cache": str(root / "cache"),
                "batch_rows": batch_rows,
            },
            base_dir=Path(base_dir) if base_dir else Path.cwd(),
        )
        result = run_build(recipe, registry=registry, progress=False)
        parts = [pq.read_table(root / "out" / f"{name}.parquet") for name in ("curated", "rejected")]
        merged = pa.concat_tables(parts).sort_by(ORDER).drop_columns([ORDER])
    return merged.replace_schema_metadata({b"manifest": json.dumps(result.manifest, default=str).encode()})


def _registry_with(cls: type[Filter]) -> Registry:
    """The installed plugins plus ``cls``, replacing an installed filter of the same name."""

    class _Plugin:
        @staticmethod
        @hookimpl
        def register_filters(register: RegisterFilter) -> None:
            register(cls)

    return get_registry().replaced_by(registry_for([_Plugin]))


def manifest_of(result: pa.Table) -> Mapping[str, Any]:
    """The build manifest ``run_filter`` stored in its result."""
    return json.loads(result.schema.metadata[b"manifest"])
