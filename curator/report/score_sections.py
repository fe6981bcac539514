"""The report's sections about scores: how well each ranks correct rows, and what it keeps.

Which scores appear, and which end of each is the kept one, comes from the
build manifests (each filter's ``score_meaning``), so a third-party filter's
score is plotted exactly as a built-in one is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from curator.report import figures
from curator.report.analysis import PrecisionRecall, RecipeSummary, Sweep, intervals
from curator.report.document import Block, Figure, Section, Table, Text, number
from curator.report.examples import StepExamples
from curator.report.outcomes import Comparison

SWEEP_POINTS = (10, 20, 40, 60, 80, 100)


def distributions_section(comparison: Comparison) -> Section:
    correct, labelled = comparison.correct, comparison.labelled
    split = "correct and incorrect rows apart" if correct is not None else "no labels, all rows together"
    section = Section("Score distributions", [Text(f"Over the rows that reached each step; {split}.")])
    if not comparison.sources:
        section.blocks = [Text("No recipe has a step with a numeric score column.")]
    for i, source in enumerate(comparison.sources):
        section.blocks.append(
            Figure(
                f"distribution-{i}-{source.column}",
                figures.distribution(source, correct, labelled),
                f"{source.label} ({source.kept_end})",
            )
        )
    if comparison.unplotted:
        listed = ", ".join(f"{column} (step {step}): {meaning}" for column, step, meaning in comparison.unplotted)
        section.blocks.append(Text(f"Not plotted, having no order: {listed}."))
    return section


def ranking_sections(
    comparison: Comparison,
    base: RecipeSummary,
    summaries: list[RecipeSummary],
    sweeps: list[Sweep],
    curves: list[PrecisionRecall],
) -> list[Section]:
    """Sweeps, precision-recall curves and interval shares of the ordered scores (with labels only)."""
    if not sweeps or base.precision is None:
        return []
    return [
        _sweep_section(sweeps, base, summaries),
        _precision_recall_section(curves, base),
        _intervals_section(comparison),
    ]


def _sweep_section(sweeps: list[Sweep], base: RecipeSummary, summaries: list[RecipeSummary]) -> Section:
    assert base.precision is not None
    total = sweeps[0].rows_total
    index = [int(np.searchsorted(sweeps[0].percent, k)) for k in SWEEP_POINTS]
    rows = [[f"{base.name} (keeps every row)", f"{total}", *[f"{number(base.precision)} ({total})"] * len(index)]]
    for s in sweeps:
        cells = [s.source.label, f"{s.rows_reached}"]
        for i in index:
            cell = f"{number(s.precision[i])} ({int(s.rows_kept[i])}"
            if 0 < s.tied_kept[i] < s.tied_at_cut[i]:
                cell += f"; {int(s.tied_kept[i])} of {int(s.tied_at_cut[i])} tied"
            cells.append(cell + ")")
        rows.append(cells)
    blocks: list[Block] = [
        Text(
            "Keeping only the best k % of the rows that reached a step, by that step's score alone (the end "
            "its filter declares it keeps), re-applied to the stored scores at k = 1..100 % with the filters' "
            "own percentile cut; no re-scoring. The x axis divides by all "
            f"{total:,} candidates for every line, so a step that sees only what an earlier step kept ends "
            "left of 1. A filter may add rules of its own (keeping only a group's majority answer), so a "
            "recipe's point (a star) need not lie on its score's line."
        ),
        Figure(
            "precision-sweep",
            figures.precision_sweep(sweeps, summaries, base.precision),
            "precision against the share of all candidates kept",
        ),
        Text(
            "Each cell: precision of the rows kept by the best k % of the rows reaching the step (in "
            "brackets: how many rows that is, ⌊N·k/100⌋ of the N reaching it). Rows tied at the cut: the "
            "cut keeps exactly that many and chooses among the tied rows by a seeded hash of (id, sample); "
            "where it splits a tie the cell says how many of the tied rows are kept, and the precision counts "
            "each tied row by that share (the expectation over the seed)."
        ),
        Table(["score", "rows reaching", *[f"best {k} %" for k in SWEEP_POINTS]], rows),
    ]
    twins = [
        (a, b)
        for i, a in enumerate(sweeps)
        for b in sweeps[i + 1 :]
        if np.array_equal(a.rows_kept, b.rows_kept) and np.allclose(a.precision, b.precision, equal_nan=True)
    ]
    if twins:
        listed = "; ".join(f"{a.source.label} and {b.source.label}" for a, b in twins)
        blocks.append(Text(f"Identical curves (the scores rank the rows alike, drawn one over the other): {listed}."))
    return Section("Precision against kept fraction", blocks)


def _precision_recall_section(curves: list[PrecisionRecall], base: RecipeSummary) -> Section:
    assert base.precision is not None
    return Section(
        "Precision–recall",
        [
            Text(
                "Each score's rows taken best first, a point per distinct value (tied rows enter together). "
                "Recall is over all correct candidates, as in the recipe table. Average precision "
                "(Σ ΔR·P) is over the rows reaching the step, with R over the correct rows among them."
            ),
            Figure("precision-recall", figures.precision_recall(curves, base.precision), "precision against recall"),
            Table(
                ["score", "rows reaching", "correct among them", "precision of all reaching", "average precision"],
                [[f"{base.name} (every row)", f"{base.rows_kept}", f"{base.correct_kept}", number(base.precision), "—"]]
                + [
                    [c.source.label, f"{c.rows_reached}", f"{c.correct_reached}",
                     number(c.correct_reached / c.rows_reached), number(c.average_precision)]
                    for c in curves
                ],  # fmt: skip
            ),
        ],
    )


def _intervals_section(comparison: Comparison) -> Section:
    assert comparison.correct is not None and comparison.labelled is not None
    section = Section("Share of correct rows per score interval", [])
    for i, source in enumerate(comparison.sources):
        table = intervals(source, comparison.correct, comparison.labelled)
        if table is None:
            continue
        caption = f"Share correct per {source.column} interval: {source.label}"
        section.blocks.append(Figure(f"intervals-{i}-{source.column}", figures.interval_share(table), caption))
        section.blocks.append(
            Table(
                [f"{source.column} interval", "rows", "correct", "share correct"],
                [
                    [f"[{number(lo)}, {number(hi)}]", f"{n}", f"{c}", number(share)]
                    for lo, hi, n, c, share in zip(
                        table.edges[:-1], table.edges[1:], table.counts, table.correct, table.share, strict=True
                    )
                ],
            )
        )
    return section


def examples_section(found: Sequence[StepExamples]) -> Section | None:
    if not found:
        return None
    section = Section(
        "Example rationales",
        [
            Text(
                "For each scored step, of the rows that reached it: the two best and the two worst scored of "
                "those it kept and of those it dropped, each of a different question where it can (a step that "
                "drops nothing: its two ends). For a cut on the score, the worst kept and the best dropped are "
                "the rows at the cut; a step with rules of its own (keeping a group's majority answer whatever "
                "its share) may keep rows scored worse than some it drops. Long texts are cut."
            )
        ],
    )
    for item in found:
        section.blocks.append(Text(f"{item.source.label}: kept or dropped by step {item.source.step} in {item.recipe}."))
        section.blocks.append(
            Table(
                ["where", item.source.column, "kept", "correct", "answer", "reference", "question", "rationale"],
                [
                    [e.where, f"{e.score:.4g}", "yes" if e.kept else "no",
                     "—" if e.correct is None else "yes" if e.correct else "no",
                     e.answer or "—", e.reference or "—", e.question, e.rationale]
                    for e in item.examples
                ],  # fmt: skip
            )
        )
    return section
