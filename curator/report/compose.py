"""Putting a comparison's numbers and plots into ``report.md``, ``report.html`` and PNGs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curator.outputs import atomic_path, write_json
from curator.report import figures
from curator.report.analysis import (
    INTERVAL_COLUMNS,
    Comparison,
    RecipeOutcome,
    RecipeSummary,
    compare_outcomes,
    intervals,
    jaccard,
    summarize,
    sweep,
)
from curator.report.document import Document, Figure, Section, Table, Text, to_html, to_markdown
from curator.task import Task

FIGURE_DIR = "figures"
SWEEP_POINTS = (10, 20, 40, 60, 80, 100)


@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    json: Path
    figures: list[Path]


def write_report(
    outcomes: Sequence[RecipeOutcome],
    output_dir: str | Path,
    *,
    task: Task | None,
    accuracy: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReportFiles:
    """Compare the outcomes and write the report files under ``output_dir``.

    ``accuracy`` maps a recipe name to the ``metrics.json`` of a model trained
    on its curated rows (``accuracy`` and ``ci95``), for ``--train-eval``.
    """
    accuracy = accuracy or {}
    comparison = compare_outcomes(outcomes, task)
    summaries = summarize(comparison)
    overlap = jaccard(comparison.kept)
    document = Document(
        "Recipe comparison",
        [
            _recipes_section(comparison, summaries, accuracy, task),
            *_score_sections(comparison),
            _overlap_section(comparison.names, overlap),
        ],
    )
    out = Path(output_dir)
    figure_paths = [out / FIGURE_DIR / f"{figure.name}.png" for figure in document.figures()]
    for stale in set((out / FIGURE_DIR).glob("*.png")) - set(figure_paths):  # from an earlier comparison
        stale.unlink()
    for figure, path in zip(document.figures(), figure_paths, strict=True):
        with atomic_path(path) as tmp:
            tmp.write_bytes(figure.png)
    files = ReportFiles(out / "report.md", out / "report.html", out / "report.json", figure_paths)
    with atomic_path(files.markdown) as tmp:
        tmp.write_text(to_markdown(document, FIGURE_DIR))
    with atomic_path(files.html) as tmp:
        tmp.write_text(to_html(document))
    write_json(
        files.json,
        {
            "recipes": [asdict(s) | {"accuracy": accuracy.get(s.name)} for s in summaries],
            "jaccard": {"recipes": comparison.names, "matrix": overlap.tolist()},
        },
    )
    return files


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _recipes_section(
    comparison: Comparison,
    summaries: list[RecipeSummary],
    accuracy: Mapping[str, Mapping[str, Any]],
    task: Task | None,
) -> Section:
    first = summaries[0]
    labels = (
        f"Correctness from the task '{task.name}' comparing answer to reference."
        if comparison.correct is not None and task is not None
        else "No references: precision and recall are not available."
    )
    headers = [
        "recipe",
        "rows kept",
        "questions kept",
        "share of input",
        "mean weight",
        "precision",
        "recall",
    ]
    if accuracy:
        headers.append("accuracy (95% CI)")
    rows = []
    for s in summaries:
        row = [
            s.name,
            f"{s.rows_kept}",
            f"{s.questions_kept}",
            _fmt(s.share_kept),
            _fmt(s.mean_weight),
            _fmt(s.precision),
            _fmt(s.recall),
        ]
        if accuracy:
            row.append(_accuracy_cell(accuracy.get(s.name)))
        rows.append(row)
    steps = Table(
        ["recipe", "steps (filter: rows kept / rows in)"],
        [
            [name, _steps_cell(manifest)]
            for name, manifest in zip(comparison.names, comparison.manifests, strict=True)
        ],
    )
    return Section(
        "Recipes",
        [
            Text(f"{first.rows_in} candidate rows over {first.questions_in} questions. {labels}"),
            Table(headers, rows),
            steps,
        ],
    )


def _accuracy_cell(metrics: Mapping[str, Any] | None) -> str:
    if not metrics:
        return "—"
    low, high = metrics.get("ci95", (None, None))
    return f"{_fmt(metrics.get('accuracy'))} [{_fmt(low)}, {_fmt(high)}]"


def _steps_cell(manifest: Mapping[str, Any]) -> str:
    steps = manifest.get("steps", [])
    if not steps:
        return "(no filters)"
    return " → ".join(f"{s.get('step')}: {s.get('rows_kept')}/{s.get('rows_in')}" for s in steps)


def _score_sections(comparison: Comparison) -> list[Section]:
    correct, labelled = comparison.correct, comparison.labelled
    sources = comparison.sources
    if not sources:
        return [Section("Scores", [Text("No recipe has a step with a reported score column.")])]
    split = "correct and incorrect rows apart" if correct is not None else "no labels, all rows together"
    distributions = Section("Score distributions", [Text(f"Over the rows that reached each step; {split}.")])
    for i, source in enumerate(sources):
        distributions.blocks.append(
            Figure(
                f"distribution-{i}-{source.column}",
                figures.distribution(source, correct, labelled),
                source.label,
            )
        )
    if correct is None or labelled is None:
        return [distributions]

    shares = Section("Share of correct rows per score interval", [])
    for i, source in enumerate(sources):
        table = intervals(source, correct, labelled) if source.column in INTERVAL_COLUMNS else None
        if table is None:
            continue
        caption = f"Share correct per {source.column} interval: {source.label}"
        shares.blocks.append(Figure(f"intervals-{i}-{source.column}", figures.interval_share(table), caption))
        shares.blocks.append(
            Table(
                [f"{source.column} interval", "rows", "correct", "share correct"],
                [
                    [f"[{_fmt(lo)}, {_fmt(hi)}]", f"{n}", f"{c}", _fmt(share)]
                    for lo, hi, n, c, share in zip(
                        table.edges[:-1],
                        table.edges[1:],
                        table.counts,
                        table.correct,
                        table.share,
                        strict=True,
                    )
                ],
            )
        )

    sweeps = [s for s in (sweep(source, correct, labelled) for source in sources) if s is not None]
    precision = Section(
        "Precision against kept fraction",
        [
            Text(
                "Each filter's percentile rule re-applied at k = 1..100 % to its stored scores (no re-scoring)."
            )
        ],
    )
    if sweeps:
        precision.blocks.append(
            Figure("precision-sweep", figures.precision_sweep(sweeps), "precision vs kept fraction")
        )
        index = [int(np.searchsorted(sweeps[0].percent, k)) for k in SWEEP_POINTS]
        precision.blocks.append(
            Table(
                ["score: precision (kept fraction) at", *[f"k={k}%" for k in SWEEP_POINTS]],
                [
                    [
                        s.source.label,
                        *[f"{_fmt(s.precision[i])} ({_fmt(s.kept_fraction[i], 2)})" for i in index],
                    ]
                    for s in sweeps
                ],
            )
        )
    sections = [distributions, precision]
    if shares.blocks:
        sections.insert(1, shares)
    return sections


def _overlap_section(names: list[str], matrix: np.ndarray) -> Section:
    return Section(
        "Overlap of kept sets",
        [
            Text("Jaccard index |A ∩ B| / |A ∪ B| of the rows each pair of recipes kept."),
            Table(["recipe", *names], [[a, *[_fmt(v) for v in matrix[i]]] for i, a in enumerate(names)]),
            Figure("jaccard", figures.jaccard_matrix(names, matrix), "Jaccard overlap of kept rows"),
        ],
    )
