"""``curator compare``: several recipes' builds over the same candidates, side by side::

    from curator.report import CompareConfig, run_compare

    result = run_compare(CompareConfig(recipes=("lmsi.yaml", "iwsi.yaml"), output="report"))

``write_report(outcomes, DIR, task=..., accuracy=...)`` writes ``report.md``,
a self-contained ``report.html``, ``report.json`` and the figures as PNG.
Everything is computed from the build outputs (scores included) and the
manifests beside them (what each score means, the generation's cost, each
adapter's training), so a report never loads a model. Plotting needs
matplotlib (the ``report`` extra), which is imported only when a figure is drawn.
"""

from __future__ import annotations

from curator.report.compare import CompareResult, run_compare
from curator.report.compose import ReportFiles, write_report
from curator.report.config import CompareConfig
from curator.report.outcomes import RecipeOutcome, load_outcome

__all__ = [
    "CompareConfig", "CompareResult", "RecipeOutcome", "ReportFiles", "load_outcome", "run_compare", "write_report",
]
