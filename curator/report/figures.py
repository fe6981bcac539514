"""The report's plots, each rendered to PNG bytes.

Figures are built with matplotlib's object API on an Agg canvas, never
through pyplot, so no global backend or figure registry is touched and a
report can be written from a process that also draws elsewhere.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from curator.errors import MissingDependency
from curator.report.analysis import Intervals, ScoreSource, Sweep

CORRECT, INCORRECT, UNLABELLED = "#2a9d8f", "#e76f51", "#577590"


def _figure(width: float = 6.4, height: float = 3.6):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependency("matplotlib", "the comparison report", extra="report") from None
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def distribution(source: ScoreSource, correct: np.ndarray | None, labelled: np.ndarray | None) -> bytes:
    """Histogram of a score over the rows that reached it, correct and incorrect apart."""
    figure = _figure()
    axes = figure.add_subplot()
    reached = source.reached
    values = source.values[reached]
    edges = np.histogram_bin_edges(values, bins=30)
    if correct is None or labelled is None:
        axes.hist(values, bins=edges, color=UNLABELLED, label="all rows")
    else:
        right, judged = correct[reached], labelled[reached]
        axes.hist(values[right], bins=edges, color=CORRECT, alpha=0.6, label="correct")
        axes.hist(values[judged & ~right], bins=edges, color=INCORRECT, alpha=0.6, label="incorrect")
    axes.set_xlabel(source.column)
    axes.set_ylabel("rows")
    axes.set_title(source.label, fontsize=9)
    axes.legend()
    return _png(figure)


def interval_share(table: Intervals) -> bytes:
    """Bars of the share of correct rows per score interval, with each bin's row count."""
    figure = _figure()
    axes = figure.add_subplot()
    edges = table.edges
    centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    share = table.share
    bars = axes.bar(centres, np.nan_to_num(share), width=widths * 0.9, color=CORRECT)
    axes.bar_label(bars, labels=[f"n={n}" for n in table.counts], fontsize=7)
    axes.set_ylim(0, 1.1)
    axes.set_xlabel(f"{table.source.column} interval")
    axes.set_ylabel("share correct")
    axes.set_title(table.source.label, fontsize=9)
    return _png(figure)


def precision_sweep(sweeps: Sequence[Sweep]) -> bytes:
    """Precision against kept fraction, one line per scored filter, base rate dashed."""
    figure = _figure(7.2, 4.2)
    axes = figure.add_subplot()
    for item in sweeps:
        axes.plot(item.kept_fraction, item.precision, label=item.source.label)
    for base in sorted({item.base_precision for item in sweeps}):
        axes.axhline(base, color="grey", linestyle="--", linewidth=0.8)
    axes.set_xlim(0, 1)
    axes.set_xlabel("kept fraction of the rows reaching the step")
    axes.set_ylabel("precision (share correct)")
    axes.legend(fontsize=7)
    return _png(figure)


def jaccard_matrix(names: Sequence[str], matrix: np.ndarray) -> bytes:
    """Heat map of the overlap of the recipes' kept sets."""
    size = 2.5 + 0.6 * len(names)
    figure = _figure(size + 1, size)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    axes.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), labels=names)
    for i in range(len(names)):
        for j in range(len(names)):
            axes.text(
                j,
                i,
                f"{matrix[i, j]:.2f}",
                ha="center",
                va="center",
                color="white" if matrix[i, j] < 0.6 else "black",
            )
    figure.colorbar(image, ax=axes, label="Jaccard")
    return _png(figure)
