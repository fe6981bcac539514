"""Example rationales per step: what a filter keeps and drops, at the extremes and at its cut.

Numbers say how well a score ranks; reading a handful of rows says why.
For each scored step this picks, from the rows that reached it, the best
and the last kept rows and the first and the worst dropped ones, and reads
only their text back from the build's outputs (the report otherwise never
loads question or rationale text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator.report.outcomes import Comparison, RecipeOutcome, ScoreSource

PER_END = 2
QUESTION_CHARS, RATIONALE_CHARS, ANSWER_CHARS = 300, 700, 40


@dataclass
class Example:
    where: str
    row: int
    score: float
    kept: bool
    answer: str | None
    reference: str | None
    correct: bool | None
    question: str
    rationale: str


@dataclass
class StepExamples:
    source: ScoreSource
    recipe: str
    examples: list[Example]


def step_examples(
    comparison: Comparison, outcomes: Sequence[RecipeOutcome], per_end: int = PER_END
) -> list[StepExamples]:
    """Examples for every ordered score, as its step selected in the first recipe that has it."""
    by_name = {o.name: o for o in outcomes}
    ids = np.asarray(comparison.ids.to_pylist(), dtype=object)
    found = []
    for source in comparison.sources:
        if not source.ordered or not source.reached.any():
            continue
        picks = _pick(source, source.dropped[0], ids, per_end)
        outcome = by_name[source.recipes[0]]
        texts = _texts(outcome, comparison, [row for _, row in picks])
        examples = [_example(comparison, source, source.dropped[0], where, row, texts) for where, row in picks]
        found.append(StepExamples(source, source.recipes[0], examples))
    return found


def _pick(source: ScoreSource, dropped: np.ndarray, ids: np.ndarray, per_end: int) -> list[tuple[str, int]]:
    """(role, row) from the best score to the worst: the kept rows' two ends, then the dropped rows'.

    For a cut on the score, the worst kept and the best dropped rows are the
    ones at the cut; a step with rules of its own (agreeing with the majority)
    may keep rows with worse scores than some it drops, which shows here too.
    Each role takes rows of different questions where it can.
    """
    reached = np.flatnonzero(source.reached)
    key = source.values[reached] if source.meaning == "lower" else -source.values[reached]
    ordered = reached[np.argsort(key, kind="stable")]
    kept, lost = ordered[~dropped[ordered]], ordered[dropped[ordered]]
    best, worst = ("highest", "lowest") if source.meaning == "higher" else ("lowest", "highest")
    if not lost.size:  # a step that only weights: its two ends
        groups = [(f"{best} score", kept), (f"{worst} score", kept[::-1])]
    else:
        groups = [
            ("kept, best score", kept),
            ("kept, worst score", kept[::-1]),
            ("dropped, best score", lost),
            ("dropped, worst score", lost[::-1]),
        ]
    position = np.empty(source.values.size, dtype=np.int64)
    position[ordered] = np.arange(ordered.size)
    seen: set[int] = set()
    picks: list[tuple[int, int, str, int]] = []
    for order, (role, rows) in enumerate(groups):
        chosen = _distinct_questions([r for r in rows.tolist() if r not in seen], ids, per_end)
        seen.update(chosen)
        picks += [(order, int(position[r]), role, r) for r in chosen]
    return [(role, row) for _, _, role, row in sorted(picks)]  # each group from its best score to its worst


def _distinct_questions(rows: list[int], ids: np.ndarray, count: int) -> list[int]:
    """The first ``count`` rows of different questions, topped up with repeats where there are too few."""
    chosen, questions = [], set()
    for row in rows:
        if ids[row] not in questions:
            chosen.append(row)
            questions.add(ids[row])
            if len(chosen) == count:
                return chosen
    return chosen + [r for r in rows if r not in chosen][: count - len(chosen)]


def _example(
    comparison: Comparison,
    source: ScoreSource,
    dropped: np.ndarray,
    where: str,
    row: int,
    texts: dict[tuple, tuple[str, str]],
) -> Example:
    rows = comparison.rows
    cell = {name: rows[name][row].as_py() for name in rows.column_names}
    question, rationale = texts.get(_key(cell, rows.column_names), ("", ""))
    correct = None
    if comparison.correct is not None and comparison.labelled is not None and comparison.labelled[row]:
        correct = bool(comparison.correct[row])
    return Example(
        where,
        row,
        float(source.values[row]),
        not bool(dropped[row]),
        _shorten(cell["answer"], ANSWER_CHARS) if cell.get("answer") is not None else None,
        _shorten(cell["reference"], ANSWER_CHARS) if cell.get("reference") is not None else None,
        correct,
        _shorten(question, QUESTION_CHARS),
        _shorten(rationale, RATIONALE_CHARS),
    )


def _key(cell: dict, names: Sequence[str]) -> tuple:
    return (cell["id"], cell["sample"]) if "sample" in names else (cell["id"], cell["rationale"])


def _texts(outcome: RecipeOutcome, comparison: Comparison, rows: list[int]) -> dict[tuple, tuple[str, str]]:
    """(question, rationale) of the chosen rows, from the outcome's tables or else its build folder."""
    ids = sorted({comparison.ids[r].as_py() for r in rows})
    tables = [outcome.curated, outcome.rejected]
    if not all({"question", "rationale"} <= set(t.column_names) for t in tables) and outcome.folder:
        tables = [
            pq.read_table(outcome.folder / f"{part}.parquet", filters=[("id", "in", ids)])
            for part in ("curated", "rejected")
        ]
    texts = {}
    for table in tables:
        if not {"question", "rationale"} <= set(table.column_names):
            continue
        chosen = table.filter(pc.is_in(table["id"], value_set=pa.array(ids, table["id"].type)))
        key = ["id", "sample"] if comparison.samples is not None else ["id", "rationale"]
        for cell in chosen.select(list(dict.fromkeys([*key, "question", "rationale"]))).to_pylist():
            texts[tuple(cell[k] for k in key)] = (cell["question"] or "", cell["rationale"] or "")
    return texts


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()} … ({len(text) - limit:,} more characters)"
