"""The numbers of a comparison: per-recipe summaries, overlaps, and what each score is worth.

Everything is computed from the aligned rows of :mod:`curator.report.outcomes`.
Kept fractions and recalls share one denominator across every line and
table: all input candidates (and all correct candidates), so a step that
sees only what an earlier step kept is drawn on the same axis as one that
sees everything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curator.filter import percentile_cut
from curator.report.outcomes import Comparison, ScoreSource

NO_FILTER = "no filter"
"""The baseline every table starts with: all candidates, nothing dropped."""
BASE_MODEL = "base model"
"""Under ``--train-eval``: the model evaluated with no adapter."""


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
    correct_kept: int | None
    precision: float | None
    recall: float | None


def summarize(comparison: Comparison) -> list[RecipeSummary]:
    """Rows and questions kept, share of the input, mean weight, precision and recall of each recipe."""
    return [
        _summary(comparison, name, comparison.kept[r], comparison.weight[r])
        for r, name in enumerate(comparison.names)
    ]


def baseline(comparison: Comparison) -> RecipeSummary:
    """The "no filter" row: every candidate kept at weight 1."""
    everything = np.ones(comparison.num_rows, dtype=bool)
    return _summary(comparison, NO_FILTER, everything, np.ones(comparison.num_rows))


def _summary(comparison: Comparison, name: str, kept: np.ndarray, weight: np.ndarray) -> RecipeSummary:
    ids, correct, labelled = comparison.ids, comparison.correct, comparison.labelled
    rows_kept = int(kept.sum())
    precision = recall = right = None
    if correct is not None and labelled is not None:
        right = int((correct & kept).sum())
        precision = _ratio(right, int((kept & labelled).sum()))
        recall = _ratio(right, int(correct.sum()))
    return RecipeSummary(
        name=name,
        rows_in=comparison.num_rows,
        rows_kept=rows_kept,
        questions_in=pc.count_distinct(ids).as_py(),
        questions_kept=pc.count_distinct(ids.filter(pa.array(kept))).as_py(),
        share_kept=rows_kept / comparison.num_rows if comparison.num_rows else float("nan"),
        mean_weight=float(np.nanmean(weight[kept])) if rows_kept else float("nan"),
        correct_kept=right,
        precision=precision,
        recall=recall,
    )


def sets_weights(comparison: Comparison) -> bool:
    """Whether any recipe kept a row at a weight other than 1 (else a weight column says nothing)."""
    kept = comparison.weight[comparison.kept]
    return bool(np.any(np.abs(kept - 1.0) > 1e-9))


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


def _keep_end(source: ScoreSource) -> str:
    return "lowest" if source.meaning == "lower" else "highest"


@dataclass
class Sweep:
    """Precision and recall of keeping a score's best k % (k = 1..100) of the rows that reached its step.

    ``rows_kept`` is exact (the cut's ⌊N·k/100⌋); ``tied_at_cut`` and
    ``tied_kept`` say how many rows shared the cut's value and how many of
    them the cut keeps. Precision and recall count each tied row by the share
    of the tied rows kept: the expectation over the seeded tie-break, so the
    numbers do not depend on the seed.
    """

    source: ScoreSource
    percent: np.ndarray
    rows_kept: np.ndarray
    tied_at_cut: np.ndarray
    tied_kept: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    rows_reached: int
    rows_total: int
    base_precision: float

    @property
    def kept_fraction(self) -> np.ndarray:
        """Rows kept over all input candidates: one denominator for every score."""
        return self.rows_kept / self.rows_total


def sweep(source: ScoreSource, correct: np.ndarray, labelled: np.ndarray) -> Sweep | None:
    """Re-apply the filters' percentile cut (:func:`curator.filter.percentile_cut`) at every k."""
    reached = source.reached
    if not source.ordered or not (reached & labelled).any():
        return None
    values = source.values[reached]
    judged = labelled[reached].astype(np.float64)
    hits = correct[reached].astype(np.float64)
    all_correct = int(correct.sum())
    percent = np.arange(1, 101, dtype=np.float64)
    rows_kept, tied, tied_kept, precision, recall = (np.zeros_like(percent) for _ in range(5))
    for i, k in enumerate(percent):
        stats = percentile_cut(values, k, keep=_keep_end(source))
        share = _kept_share(values, stats)
        rows_kept[i], tied[i], tied_kept[i] = stats["kept"], stats["tied_at_cut"], stats["tied_kept"]
        judged_kept = (share * judged).sum()
        precision[i] = (share * hits).sum() / judged_kept if judged_kept else np.nan
        recall[i] = (share * hits).sum() / all_correct if all_correct else np.nan
    base = float(hits.sum() / judged.sum())
    return Sweep(
        source, percent, rows_kept, tied, tied_kept, precision, recall, int(reached.sum()), reached.size, base
    )


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
class PrecisionRecall:
    """Precision against recall of a score, one point per distinct value (tied rows enter together).

    ``recall`` is over all correct candidates, as in the recipe table, so a
    step that sees only part of the input ends below 1. ``average_precision``
    is the step's own: Σ ΔR·P with R over the correct rows that reached it.
    """

    source: ScoreSource
    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    rows_reached: int
    correct_reached: int
    average_precision: float | None


def precision_recall(source: ScoreSource, correct: np.ndarray, labelled: np.ndarray) -> PrecisionRecall | None:
    reached = source.reached & labelled
    if not source.ordered or not reached.any():
        return None
    values = source.values[reached]
    hits = correct[reached]
    order = np.argsort(values if source.meaning == "lower" else -values, kind="stable")
    ordered = values[order]
    last_of_value = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    true_positives = np.cumsum(hits[order])[last_of_value]
    counted = last_of_value + 1
    precision = true_positives / counted
    all_correct, correct_reached = int(correct.sum()), int(hits.sum())
    recall = true_positives / all_correct if all_correct else np.full(precision.shape, np.nan)
    average = None
    if correct_reached:
        own_recall = true_positives / correct_reached
        average = float(np.sum(np.diff(own_recall, prepend=0.0) * precision))
    return PrecisionRecall(
        source, ordered[last_of_value], precision, recall, int(reached.sum()), correct_reached, average
    )


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
    if not source.ordered or not reached.any():
        return None
    values = source.values[reached]
    edges = np.histogram_bin_edges(values, bins=bins)
    counts = np.histogram(values, edges)[0]
    hits = np.histogram(values[correct[reached]], edges)[0]
    return Intervals(source, edges, counts, hits)
