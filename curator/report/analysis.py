"""The numbers of a comparison: recipes' built outputs lined up row by row.

Every build writes each input row to either ``curated.parquet`` or
``rejected.parquet``, so the union of the two is the whole input. Sorting
that union by the row key puts every recipe's rows in one shared order, and
from there each question the report asks (what did a recipe keep, how good is
a score at ranking correct rows) is a vectorised operation on aligned arrays.

Correctness labels come from the task's ``equal_batch`` on ``answer`` and
``reference``, so a recipe needs no ``correctness`` step to be judged.
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
from curator.filter import percentile_cut
from curator.task import Task

SCORE_COLUMNS: dict[str, str | None] = {
    "ds_weight": "lowest",
    "answer_entropy": "lowest",
    "vote_share": "highest",
    "reward": "highest",
    "self_eval": "highest",
    "nce_beta": None,
}
"""The score columns a report shows, and which end of each its filter keeps
(None: the filter weights rows and drops none, so there is nothing to sweep)."""

INTERVAL_COLUMNS = ("ds_weight", "answer_entropy")
"""Score columns whose intervals get a share-correct analysis (IWSI's DS-weight study)."""

PARTS = ("curated", "rejected")


@dataclass
class RecipeOutcome:
    """What one recipe's build produced: its kept and dropped rows and its manifest."""

    name: str
    curated: pa.Table
    rejected: pa.Table
    manifest: Mapping[str, Any]


def load_outcome(name: str, output_dir: str | Path) -> RecipeOutcome:
    """Read a build's output folder: only the columns a report uses, never the question text."""
    folder = Path(output_dir)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        wanted = {"id", "sample", "answer", "reference", "keep", "weight"}
        wanted |= {c for step in manifest.get("steps", []) for c in step.get("columns", [])}
        names = pq.read_schema(folder / "curated.parquet").names
        parts = [
            pq.read_table(folder / f"{p}.parquet", columns=[c for c in names if c in wanted]) for p in PARTS
        ]
        if any("rationale" in _row_key(t) for t in parts):
            parts = [
                t.append_column(
                    "rationale", pq.read_table(folder / f"{p}.parquet", columns=["rationale"])["rationale"]
                )
                for t, p in zip(parts, PARTS, strict=True)
            ]
    except (OSError, pa.ArrowInvalid, json.JSONDecodeError) as exc:
        raise CuratorError(f"{folder}: not a complete build output ({exc})") from None
    return RecipeOutcome(name, parts[0], parts[1], manifest)


@dataclass
class ScoreSource:
    """One score column's values over the shared rows (NaN where the step was not reached).

    Recipes that share a prefix of steps carry identical scores; those are
    one source listing every recipe it came from.
    """

    column: str
    step: str
    values: np.ndarray
    recipes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        step = "" if self.step == self.column else f" (step {self.step})"
        return f"{self.column}{step} in {', '.join(self.recipes)}"

    @property
    def reached(self) -> np.ndarray:
        return np.isfinite(self.values)


@dataclass
class Comparison:
    """Recipes' outcomes over one shared set of rows, in one row order."""

    names: list[str]
    manifests: list[Mapping[str, Any]]
    ids: pa.Array
    kept: np.ndarray  # [recipes, rows] bool
    weight: np.ndarray  # [recipes, rows] float64, NaN where dropped
    correct: np.ndarray | None  # [rows] bool, None without references
    labelled: np.ndarray | None  # [rows] bool: rows with a reference
    sources: list[ScoreSource]

    @property
    def num_rows(self) -> int:
        return int(self.kept.shape[1])


def compare_outcomes(outcomes: Sequence[RecipeOutcome], task: Task | None) -> Comparison:
    """Line the outcomes up row by row; fail when they were built over different rows."""
    if not outcomes:
        raise CuratorError("nothing to compare: no recipe outcomes")
    tables = [_whole_input(o) for o in outcomes]
    first = tables[0]
    key = _row_key(first)
    for outcome, table in zip(outcomes[1:], tables[1:], strict=True):
        if table.num_rows != first.num_rows or not all(table[k].equals(first[k]) for k in key):
            raise CuratorError(
                f"recipe '{outcome.name}' was built over different candidates than '{outcomes[0].name}'"
            )
    kept = np.stack([t["keep"].to_numpy(zero_copy_only=False).astype(bool) for t in tables])
    weight = np.stack([_floats(t["weight"]) for t in tables])
    weight[~kept] = np.nan
    correct, labelled = _labels(first, task)
    return Comparison(
        names=[o.name for o in outcomes],
        manifests=[o.manifest for o in outcomes],
        ids=first["id"].combine_chunks(),
        kept=kept,
        weight=weight,
        correct=correct,
        labelled=labelled,
        sources=_score_sources(outcomes, tables),
    )


def _whole_input(outcome: RecipeOutcome) -> pa.Table:
    """Curated and rejected rows together, sorted by the row key."""
    table = pa.concat_tables([outcome.curated, outcome.rejected], promote_options="permissive")
    for column in ("id", "keep", "weight", *_row_key(table)):
        if column not in table.column_names:
            raise CuratorError(f"recipe '{outcome.name}': the build output has no column '{column}'")
    return table.sort_by([(k, "ascending") for k in _row_key(table)])


def _row_key(table: pa.Table) -> list[str]:
    """``(id, sample)`` names a candidate; without ``sample``, identical rationales are interchangeable."""
    if "sample" in table.column_names and table["sample"].null_count == 0:
        return ["id", "sample"]
    return ["id", "rationale"]


def _floats(column: pa.ChunkedArray) -> np.ndarray:
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


def _score_sources(outcomes: Sequence[RecipeOutcome], tables: Sequence[pa.Table]) -> list[ScoreSource]:
    """Every reported score column of every step, identical ones merged."""
    sources: list[ScoreSource] = []
    for outcome, table in zip(outcomes, tables, strict=True):
        for step in outcome.manifest.get("steps", []):
            for column in step.get("columns", []):
                base = _base_column(column, step)
                if base not in SCORE_COLUMNS or column not in table.column_names:
                    continue
                values = _floats(table[column])
                twin = next(
                    (
                        s
                        for s in sources
                        if s.column == base and np.array_equal(s.values, values, equal_nan=True)
                    ),
                    None,
                )
                if twin is None:
                    twin = ScoreSource(base, str(step.get("step", base)), values)
                    sources.append(twin)
                if outcome.name not in twin.recipes:
                    twin.recipes.append(outcome.name)
    return sources


def _base_column(column: str, step: Mapping[str, Any]) -> str:
    """The filter's own column name: a step named ``x`` suffixes its columns ``_x``."""
    suffix = f"_{step.get('step')}"
    if column not in SCORE_COLUMNS and column.endswith(suffix):
        return column[: -len(suffix)]
    return column


# -- the numbers ---------------------------------------------------------------


@dataclass
class RecipeSummary:
    """One row of the per-recipe table."""

    name: str
    rows_in: int
    rows_kept: int
    questions_in: int
    questions_kept: int
    share_kept: float
    mean_weight: float
    precision: float | None
    recall: float | None


def summarize(comparison: Comparison) -> list[RecipeSummary]:
    """Rows and questions kept, share of the input, mean weight, precision and recall."""
    ids = comparison.ids
    questions_in = pc.count_distinct(ids).as_py()
    correct, labelled = comparison.correct, comparison.labelled
    summaries = []
    for r, name in enumerate(comparison.names):
        kept = comparison.kept[r]
        rows_kept = int(kept.sum())
        precision = recall = None
        if correct is not None and labelled is not None:
            judged = kept & labelled
            precision = _ratio(int((correct & kept).sum()), int(judged.sum()))
            recall = _ratio(int((correct & kept).sum()), int(correct.sum()))
        summaries.append(
            RecipeSummary(
                name=name,
                rows_in=comparison.num_rows,
                rows_kept=rows_kept,
                questions_in=questions_in,
                questions_kept=pc.count_distinct(ids.filter(pa.array(kept))).as_py(),
                share_kept=rows_kept / comparison.num_rows if comparison.num_rows else float("nan"),
                mean_weight=float(np.nanmean(comparison.weight[r])) if rows_kept else float("nan"),
                precision=precision,
                recall=recall,
            )
        )
    return summaries


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def jaccard(kept: np.ndarray) -> np.ndarray:
    """|A ∩ B| / |A ∪ B| for every pair of kept sets; two empty sets are identical (1)."""
    as_int = kept.astype(np.int64)
    both = as_int @ as_int.T
    sizes = as_int.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - both
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, both / np.maximum(union, 1), 1.0)


@dataclass
class Sweep:
    """Precision and recall of keeping a score's best k % (k = 1..100) of the rows it reached."""

    source: ScoreSource
    percent: np.ndarray
    kept_fraction: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    base_precision: float


def sweep(source: ScoreSource, correct: np.ndarray, labelled: np.ndarray) -> Sweep | None:
    """Re-run the filter's percentile selection at every k from the stored scores.

    Uses the filters' cut (:func:`curator.filter.percentile_cut`): the rows
    strictly better than the cut count whole and the rows tied at it count by
    the share of them the cut keeps, so each point is the expectation over
    the seeded tie-break, and a recipe's k keeps the same number of rows.
    """
    keep = SCORE_COLUMNS[source.column]
    reached = source.reached & labelled
    if keep is None or not reached.any():
        return None
    values = source.values[reached]
    hits = correct[reached].astype(np.float64)
    percent = np.arange(1, 101, dtype=np.float64)
    fraction, precision, recall = (np.empty_like(percent) for _ in range(3))
    for i, k in enumerate(percent):
        share = _kept_share(values, percentile_cut(values, k, keep=keep))
        fraction[i] = share.mean()
        precision[i] = (share * hits).sum() / share.sum() if share.any() else np.nan
        recall[i] = (share * hits).sum() / hits.sum() if hits.any() else np.nan
    return Sweep(source, percent, fraction, precision, recall, float(hits.mean()))


def _kept_share(values: np.ndarray, stats: dict) -> np.ndarray:
    """Each row's chance of being kept by a fitted cut: 1 or 0, or the tied share at the cut."""
    if stats["cut"] is None:
        return np.zeros(values.shape)
    with np.errstate(invalid="ignore"):
        better = values < stats["cut"] if stats["keep"] == "lowest" else values > stats["cut"]
        at = values == stats["cut"]
    tied = stats["tied_kept"] / stats["tied_at_cut"] if stats["tied_at_cut"] else 0.0
    return np.where(better, 1.0, np.where(at, tied, 0.0))


@dataclass
class Intervals:
    """Share of correct rows per interval of a score (equal-width bins over its range)."""

    source: ScoreSource
    edges: np.ndarray
    counts: np.ndarray
    correct: np.ndarray

    @property
    def share(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.correct / np.maximum(self.counts, 1), np.nan)


def intervals(
    source: ScoreSource, correct: np.ndarray, labelled: np.ndarray, bins: int = 10
) -> Intervals | None:
    reached = source.reached & labelled
    if not reached.any():
        return None
    values = source.values[reached]
    edges = np.histogram_bin_edges(values, bins=bins)
    counts = np.histogram(values, edges)[0]
    hits = np.histogram(values[correct[reached]], edges)[0]
    return Intervals(source, edges, counts, hits)
