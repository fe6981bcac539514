"""Recipes' built outputs lined up row by row, and the score columns their manifests describe.

Every build writes each input row to either ``curated.parquet`` or
``rejected.parquet``, so the union of the two is the whole input. Sorting
that union by the row key puts every recipe's rows in one shared order, and
from there each question the report asks (what did a recipe keep, how good is
a score at ranking correct rows) is a vectorised operation on aligned arrays.

Correctness labels come from the task's ``equal_batch`` on ``answer`` and
``reference``, so a recipe needs no ``correctness`` step to be judged. What a
score column means (which end its filter keeps, or that it is a label) comes
from the build manifest, where each filter's own declaration was written: the
report names no filter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator.errors import CuratorError
from curator.task import Task

PARTS = ("curated", "rejected")
ORDERED = ("higher", "lower")
"""Meanings with a kept end: such a score gets sweeps, intervals and precision-recall curves."""


@dataclass
class RecipeOutcome:
    """What one recipe's build produced: its kept and dropped rows, its manifest, and where it lies."""

    name: str
    curated: pa.Table
    rejected: pa.Table
    manifest: Mapping[str, Any]
    folder: Path | None = None


def load_outcome(name: str, output_dir: str | Path) -> RecipeOutcome:
    """Read a build's output folder: only the columns a report uses, never the question text."""
    folder = Path(output_dir)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        wanted = {"id", "sample", "answer", "reference", "keep", "weight", "dropped_by"}
        wanted |= {c for step in manifest.get("steps", []) for c in step.get("columns", [])}
        names = pq.read_schema(folder / "curated.parquet").names
        parts = [
            pq.read_table(folder / f"{p}.parquet", columns=[c for c in names if c in wanted]) for p in PARTS
        ]
        if any("rationale" in row_key(t) for t in parts):
            parts = [
                t.append_column(
                    "rationale", pq.read_table(folder / f"{p}.parquet", columns=["rationale"])["rationale"]
                )
                for t, p in zip(parts, PARTS, strict=True)
            ]
    except (OSError, pa.ArrowInvalid, json.JSONDecodeError) as exc:
        raise CuratorError(f"{folder}: not a complete build output ({exc})") from None
    return RecipeOutcome(name, parts[0], parts[1], manifest, folder)


@dataclass
class ScoreSource:
    """One score column's values over the shared rows (NaN where the step was not reached).

    Recipes that share a prefix of steps carry identical scores; those are
    one source listing every recipe it came from. ``meaning`` is what the
    filter declared (``higher`` / ``lower``: the end it keeps; None:
    undeclared, so only its distribution is shown).
    """

    column: str
    step: str
    meaning: str | None
    values: np.ndarray
    recipes: list[str] = field(default_factory=list)
    dropped: list[np.ndarray] = field(default_factory=list)
    """Per recipe in ``recipes``: the rows this step dropped there (its selection may differ by recipe)."""

    @property
    def label(self) -> str:
        step = "" if self.step == self.column else f" (step {self.step})"
        return f"{self.column}{step} in {', '.join(self.recipes)}"

    @property
    def reached(self) -> np.ndarray:
        """Rows that reached the step with a score (a NaN score is never kept, nor counted by a cut)."""
        return np.isfinite(self.values)

    @property
    def ordered(self) -> bool:
        return self.meaning in ORDERED

    @property
    def kept_end(self) -> str:
        """What a reader needs to read its plots: which end its filter keeps."""
        return f"{self.meaning} kept" if self.ordered else "meaning undeclared"


@dataclass
class Comparison:
    """Recipes' outcomes over one shared set of rows, in one row order."""

    names: list[str]
    manifests: list[Mapping[str, Any]]
    ids: pa.Array
    samples: pa.Array | None
    kept: np.ndarray  # [recipes, rows] bool
    weight: np.ndarray  # [recipes, rows] float64, NaN where dropped
    correct: np.ndarray | None  # [rows] bool, None without references
    labelled: np.ndarray | None  # [rows] bool: rows with a reference
    sources: list[ScoreSource]
    unplotted: list[tuple[str, str, str]]
    """(column, step, meaning) of score columns with no order to plot: booleans and labels."""
    rows: pa.Table
    """The shared rows' key, answer and reference columns, in the shared order (for examples)."""

    @property
    def num_rows(self) -> int:
        return int(self.kept.shape[1])


def compare_outcomes(outcomes: Sequence[RecipeOutcome], task: Task | None) -> Comparison:
    """Line the outcomes up row by row; fail when they were built over different rows."""
    if not outcomes:
        raise CuratorError("nothing to compare: no recipe outcomes")
    tables = [_whole_input(o) for o in outcomes]
    first = tables[0]
    key = row_key(first)
    for outcome, table in zip(outcomes[1:], tables[1:], strict=True):
        if table.num_rows != first.num_rows or not all(table[k].equals(first[k]) for k in key):
            raise CuratorError(
                f"recipe '{outcome.name}' was built over different candidates than '{outcomes[0].name}'"
            )
    kept = np.stack([t["keep"].to_numpy(zero_copy_only=False).astype(bool) for t in tables])
    weight = np.stack([floats(t["weight"]) for t in tables])
    weight[~kept] = np.nan
    correct, labelled = _labels(first, task)
    sources, unplotted = _score_sources(outcomes, tables)
    shown = [c for c in (*key, "answer", "reference") if c in first.column_names]
    return Comparison(
        names=[o.name for o in outcomes],
        manifests=[o.manifest for o in outcomes],
        ids=first["id"].combine_chunks(),
        samples=first["sample"].combine_chunks() if "sample" in key else None,
        kept=kept,
        weight=weight,
        correct=correct,
        labelled=labelled,
        sources=sources,
        unplotted=unplotted,
        rows=first.select(list(dict.fromkeys(shown))),
    )


def _whole_input(outcome: RecipeOutcome) -> pa.Table:
    """Curated and rejected rows together, sorted by the row key."""
    table = pa.concat_tables([outcome.curated, outcome.rejected], promote_options="permissive")
    for column in ("id", "keep", "weight", *row_key(table)):
        if column not in table.column_names:
            raise CuratorError(f"recipe '{outcome.name}': the build output has no column '{column}'")
    return table.sort_by([(k, "ascending") for k in row_key(table)])


def row_key(table: pa.Table) -> list[str]:
    """``(id, sample)`` names a candidate; without ``sample``, identical rationales are interchangeable."""
    if "sample" in table.column_names and table["sample"].null_count == 0:
        return ["id", "sample"]
    return ["id", "rationale"]


def floats(column: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _labels(table: pa.Table, task: Task | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    names = table.column_names
    if task is None or "reference" not in names or "answer" not in names:
        return None, None
    reference = table["reference"].combine_chunks()
    if reference.null_count == len(reference):
        return None, None
    labelled = pc.is_valid(reference).to_numpy(zero_copy_only=False)
    answer = table["answer"].combine_chunks()
    correct = task.equal_batch(answer, reference).to_numpy(zero_copy_only=False).astype(bool)
    return correct & labelled, labelled


def _score_sources(
    outcomes: Sequence[RecipeOutcome], tables: Sequence[pa.Table]
) -> tuple[list[ScoreSource], list[tuple[str, str, str]]]:
    """Every numeric score column of every step, identical ones merged; booleans and labels set apart."""
    sources: list[ScoreSource] = []
    unplotted: list[tuple[str, str, str]] = []
    for outcome, table in zip(outcomes, tables, strict=True):
        dropped_by = table["dropped_by"] if "dropped_by" in table.column_names else None
        for step in outcome.manifest.get("steps", []):
            name = str(step.get("step", ""))
            meanings = step.get("meaning") or {}
            for column in step.get("columns", []):
                if column not in table.column_names:
                    continue
                base, meaning = base_column(column, step), meanings.get(column)
                numeric = pa.types.is_integer(table[column].type) or pa.types.is_floating(table[column].type)
                if meaning in ("boolean", "categorical") or not numeric:
                    entry = (base, name, str(meaning or "undeclared"))
                    if entry not in unplotted:
                        unplotted.append(entry)
                    continue
                values = floats(table[column])
                twin = next(
                    (
                        s
                        for s in sources
                        if s.column == base
                        and s.meaning == meaning
                        and np.array_equal(s.values, values, equal_nan=True)
                    ),
                    None,
                )
                if twin is None:
                    twin = ScoreSource(base, name, meaning, values)
                    sources.append(twin)
                if outcome.name not in twin.recipes:
                    twin.recipes.append(outcome.name)
                    twin.dropped.append(_dropped_by(dropped_by, name, len(values)))
    return sources, unplotted


def _dropped_by(column: pa.ChunkedArray | None, step: str, rows: int) -> np.ndarray:
    if column is None:
        return np.zeros(rows, dtype=bool)
    return pc.fill_null(pc.equal(column, step), False).to_numpy(zero_copy_only=False).astype(bool)


def base_column(column: str, step: Mapping[str, Any]) -> str:
    """The filter's own column name: a step renamed ``x`` suffixes its columns ``_x``."""
    name, filter_name = step.get("step"), step.get("filter")
    suffix = f"_{name}"
    if name != filter_name and column.endswith(suffix):
        return column[: -len(suffix)]
    return column
