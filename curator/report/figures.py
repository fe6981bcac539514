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
from curator.report.analysis import Intervals, PrecisionRecall, RecipeSummary, Sweep
from curator.report.outcomes import ScoreSource

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
    figure.savefig(buffer, format="png")  # the constrained layout already fits every label in
    return buffer.getvalue()


def distribution(source: ScoreSource, correct: np.ndarray | None, labelled: np.ndarray | None) -> bytes:
    """Histogram of a score over the rows that reached it, correct and incorrect apart."""
    figure = _figure()
    axes = figure.add_subplot()
    reached = source.reached
    values = source.values[reached]
    edges = np.histogram_bin_edges(values, bins=30)
    if correct is None or labelled is None:
        axes.hist(values, bins=edges, color=UNLABELLED, histtype="stepfilled", label="all rows")
    else:
        right, judged = correct[reached], labelled[reached]
        # One polygon per histogram (stepfilled), not a patch per bar: the same picture, drawn far faster.
        axes.hist(values[right], bins=edges, color=CORRECT, alpha=0.6, histtype="stepfilled", label="correct")
        axes.hist(values[judged & ~right], bins=edges, color=INCORRECT, alpha=0.6, histtype="stepfilled",
                  label="incorrect")  # fmt: skip
    axes.set_xlabel(f"{source.column} ({source.kept_end})")
    axes.set_ylabel("rows")
    axes.set_title(source.label, fontsize=9)
    axes.legend(loc="best")  # cheap to place: each histogram is one polygon
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
    overall = table.correct.sum() / table.counts.sum()
    axes.axhline(overall, color="#555555", linestyle=(0, (4, 3)), linewidth=1,
                 label=f"all rows reaching the step: {overall:.3f}")  # fmt: skip
    axes.legend(loc="upper right", fontsize=8)
    axes.set_ylim(0, 1.25)
    axes.set_xlabel(f"{table.source.column} interval")
    axes.set_ylabel("share correct")
    axes.set_title(table.source.label, fontsize=9)
    return _png(figure)


STYLES = [
    ("#0072b2", "-", "o"),
    ("#d55e00", "--", "s"),
    ("#e69f00", "-.", "^"),
    ("#cc79a7", ":", "D"),
    ("#009e73", "-", "v"),
    ("#56b4e9", "--", "P"),
    ("#000000", "-.", "X"),
    ("#8c564b", ":", "*"),
]
"""Colour (Okabe and Ito's colour-blind safe set), line style and marker per line: curves that coincide
stay apart by style, never by moving them."""


def _style(i: int, lines: int) -> dict:
    """Earlier lines drawn wider, so one that a later line covers still shows along both its edges."""
    colour, line, marker = STYLES[i % len(STYLES)]
    width = 1.5 + 1.2 * (lines - 1 - i) / max(1, lines - 1) if lines > 1 else 1.6
    return {"color": colour, "linestyle": line, "marker": marker, "markersize": 5.5, "linewidth": width}


def precision_sweep(sweeps: Sequence[Sweep], points: Sequence[RecipeSummary], base_precision: float) -> bytes:
    """Precision against kept fraction of all candidates: a line per score, a point per recipe, the base rate."""
    from matplotlib.lines import Line2D

    figure = _figure(8.0, 5.6)
    axes = figure.add_subplot()
    total = sweeps[0].rows_total
    points = [p for p in points if p.precision is not None]
    for i, item in enumerate(sweeps):
        # Markers at the same k on every line (10, 20, ... %), staggered by line so coinciding ones show both.
        marks = list(range(9 - i % 3, item.percent.size, 10))
        axes.plot(item.kept_fraction, item.precision, label=item.source.label, markevery=marks,
                  **_style(i, len(sweeps)))  # fmt: skip
    axes.axhline(base_precision, color="#555555", linestyle=(0, (4, 3)), linewidth=1)
    axes.annotate(
        f"no filter: {base_precision:.3f}",
        (1.0, base_precision),
        xytext=(-4, -12),
        textcoords="offset points",
        ha="right",
        fontsize=8,
        color="#555555",
    )
    for point in points:
        axes.plot(point.share_kept, point.precision, linestyle="none", marker="*", markersize=13,
                  color="black", markerfacecolor="#ffd166", zorder=5)  # fmt: skip
        axes.annotate(point.name, (point.share_kept, point.precision), xytext=(7, 4),
                      textcoords="offset points", fontsize=8)  # fmt: skip
    axes.set_xlim(0, 1.02)
    axes.set_xlabel(f"rows kept / all {total:,} candidates")
    axes.set_ylabel("precision (share of kept rows correct)")
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    handles.append(Line2D([], [], color="#555555", linestyle=(0, (4, 3)), linewidth=1))
    labels.append("no filter: share correct of all candidates")
    if points:
        handles.append(Line2D([], [], linestyle="none", marker="*", markersize=11, color="black",
                              markerfacecolor="#ffd166"))  # fmt: skip
        labels.append("a recipe: what it kept")
    figure.legend(handles, labels, loc="outside lower center", ncols=1, fontsize=9, frameon=False)
    return _png(figure)


def precision_recall(curves: Sequence[PrecisionRecall], base_precision: float) -> bytes:
    """Precision against recall of each score, recall over all correct candidates."""
    from matplotlib.lines import Line2D

    figure = _figure(8.0, 5.6)
    axes = figure.add_subplot()
    for i, curve in enumerate(curves):
        # A point per distinct score value; a coarse score (a share of four votes) has few, all marked.
        every = 1 if curve.recall.size <= 25 else max(1, curve.recall.size // 10)
        label = f"{curve.source.label} (AP {curve.average_precision:.3f})" if curve.average_precision else curve.source.label
        axes.plot(curve.recall, curve.precision, label=label, markevery=slice(i % 3 if every > 1 else 0, None, every),
                  **_style(i, len(curves)))  # fmt: skip
    axes.axhline(base_precision, color="#555555", linestyle=(0, (4, 3)), linewidth=1)
    axes.annotate(
        f"no filter: {base_precision:.3f}",
        (0.0, base_precision),
        xytext=(4, -12),
        textcoords="offset points",
        fontsize=8,
        color="#555555",
    )
    axes.set_xlim(0, 1.02)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("recall (share of all correct candidates kept)")
    axes.set_ylabel("precision (share of kept rows correct)")
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    handles.append(Line2D([], [], color="#555555", linestyle=(0, (4, 3)), linewidth=1))
    labels.append("no filter: share correct of all candidates")
    figure.legend(handles, labels, loc="outside lower center", ncols=1, fontsize=9, frameon=False)
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
