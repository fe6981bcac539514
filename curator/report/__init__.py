"""Comparison reports: several recipes' builds over the same candidates, side by side.

``write_report(outcomes, DIR, task=...)`` writes ``report.md``, a
self-contained ``report.html``, ``report.json`` and the figures as PNG.
Everything is computed from the build outputs (scores included), so a report
never loads a model. Plotting needs matplotlib (the ``report`` extra), which
is imported only when a figure is drawn.
"""

from __future__ import annotations

from curator.report.analysis import RecipeOutcome, load_outcome
from curator.report.compose import ReportFiles, write_report

__all__ = ["RecipeOutcome", "ReportFiles", "load_outcome", "write_report"]
