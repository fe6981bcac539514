"""Putting a comparison's numbers and plots into ``report.md``, ``report.html``, ``report.json`` and PNGs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from curator.outputs import atomic_path, write_json
from curator.report.analysis import (
    PrecisionRecall,
    Sweep,
    baseline,
    jaccard,
    precision_recall,
    sets_weights,
    summarize,
    sweep,
)
from curator.report.document import Document, Section, to_html, to_markdown
from curator.report.examples import step_examples
from curator.report.outcomes import Comparison, RecipeOutcome, compare_outcomes
from curator.report.provenance import find_generation, training_runs
from curator.report.score_sections import (
    SWEEP_POINTS,
    distributions_section,
    examples_section,
    ranking_sections,
)
from curator.report.sections import (
    candidates_section,
    evaluation_sections,
    overlap_section,
    recipes_section,
    training_section,
)
from curator.report.significance import paired_tests
from curator.task import Task

FIGURE_DIR = "figures"


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

    ``accuracy`` maps a model's name (a recipe's, ``"no filter"``, ``"base
    model"``) to what evaluating it gave: ``accuracy`` and ``ci95`` (or
    ``accuracy: None`` and ``skipped``), ``correct`` and ``questions``, and
    optionally ``predictions`` (its ``predictions.parquet``, for the paired
    tests) and ``adapter`` (its folder, for the training settings and loss curve).
    """
    accuracy = dict(accuracy or {})
    out = Path(output_dir)
    comparison = compare_outcomes(outcomes, task)
    summaries, base = summarize(comparison), baseline(comparison)
    overlap = jaccard(comparison.kept)
    paired = paired_tests(accuracy)
    sweeps, curves = _rankings(comparison)
    source_path = comparison.manifests[0].get("input", {}).get("path")
    generation = find_generation(source_path) if source_path else None
    sections: list[Section | None] = [
        recipes_section(comparison, base, summaries, accuracy, task, sets_weights(comparison)),
        candidates_section(generation, base, summaries) if generation else None,
        *(evaluation_sections(accuracy, paired) if accuracy else []),
        *ranking_sections(comparison, base, summaries, list(sweeps.values()), list(curves.values())),
        distributions_section(comparison),
        examples_section(step_examples(comparison, outcomes)),
        overlap_section(comparison.names, overlap),
        training_section(accuracy, training_runs(accuracy), out),
    ]
    document = Document("Recipe comparison", [s for s in sections if s is not None and s.blocks])
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
            "no_filter": asdict(base),
            "recipes": [asdict(s) | {"accuracy": accuracy.get(s.name)} for s in summaries],
            "accuracy": accuracy,
            "paired_tests": [asdict(t) | {"p_value": t.p_value} for t in paired],
            "scores": _score_numbers(comparison, sweeps, curves),
            "generation": asdict(generation) | {"manifest_path": str(generation.manifest_path)}
            if generation
            else None,
            "jaccard": {"recipes": comparison.names, "matrix": overlap.tolist()},
        },
    )
    return files


def _rankings(comparison: Comparison) -> tuple[dict[int, Sweep], dict[int, PrecisionRecall]]:
    """Each ordered score's sweep and precision-recall curve, by source index (labels needed)."""
    correct, labelled = comparison.correct, comparison.labelled
    if correct is None or labelled is None:
        return {}, {}
    sweeps = {i: sweep(s, correct, labelled) for i, s in enumerate(comparison.sources)}
    curves = {i: precision_recall(s, correct, labelled) for i, s in enumerate(comparison.sources)}
    return (
        {i: s for i, s in sweeps.items() if s is not None},
        {i: c for i, c in curves.items() if c is not None},
    )


def _score_numbers(
    comparison: Comparison, sweeps: Mapping[int, Sweep], curves: Mapping[int, PrecisionRecall]
) -> list[dict[str, Any]]:
    """Each score's sweep at the table's k and its average precision, for scripts reading report.json."""
    numbers = []
    for i, source in enumerate(comparison.sources):
        entry: dict[str, Any] = {"column": source.column, "step": source.step, "meaning": source.meaning,
                                 "recipes": source.recipes, "rows_reached": int(source.reached.sum())}  # fmt: skip
        if i in sweeps:
            swept, at = sweeps[i], [k - 1 for k in SWEEP_POINTS]
            entry["sweep"] = {
                "percent": list(SWEEP_POINTS),
                "rows_kept": [int(swept.rows_kept[j]) for j in at],
                "precision": [float(swept.precision[j]) for j in at],
                "recall": [float(swept.recall[j]) for j in at],
            }
        if i in curves:
            entry["average_precision"] = curves[i].average_precision
        numbers.append(entry)
    return numbers
