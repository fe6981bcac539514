"""The loss curve, drawn from ``metrics.jsonl`` so a resumed run plots its whole history."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from curator.outputs import atomic_path


def read_metrics(path: Path) -> list[dict]:
    """The records, less a last line a kill or a full disk cut short (every record ends with a newline)."""
    if not path.exists():
        return []
    text = path.read_text(errors="replace")
    whole = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in whole.splitlines() if line.strip()]


def plot_loss(metrics_path: Path, png_path: Path) -> bool:
    """Write the loss (and learning-rate) curve; False when matplotlib is missing or nothing was logged.

    Every logged step is drawn as a point as well as joined by a line, so a
    short run (one or two records: the loop logs the first and the last
    step) still shows its loss rather than an empty frame.
    """
    records = read_metrics(metrics_path)
    if not records:
        return False
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        warnings.warn(
            "matplotlib is not installed: no loss curve (pip install 'rationale-curator[report]')",
            stacklevel=2,
        )
        return False
    steps = [r["step"] for r in records]
    losses = [r["loss"] for r in records]
    fig = Figure(figsize=(6.4, 3.8), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    loss_axis = fig.add_subplot()
    marker = "o" if len(records) <= 60 else None
    loss_axis.plot(steps, losses, color="tab:blue", marker=marker, markersize=4, label="loss")
    loss_axis.annotate(f"{losses[-1]:.4f}", (steps[-1], losses[-1]), xytext=(4, 6), textcoords="offset points",
                       fontsize=8, color="#333333")  # fmt: skip
    loss_axis.set_xlabel("optimiser step")
    loss_axis.set_ylabel("training loss (mean since the previous point)", color="tab:blue")
    loss_axis.set_xlim(0, max(steps) * 1.05 + 0.5)
    loss_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_axis.grid(alpha=0.3)
    lr_axis = loss_axis.twinx()
    lr_axis.plot(steps, [r["lr"] for r in records], color="tab:gray", linestyle="--", linewidth=0.8,
                 marker="." if marker else None)  # fmt: skip
    lr_axis.set_ylabel("learning rate", color="tab:gray")
    lr_axis.set_ylim(bottom=0)
    lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    fig.suptitle(f"{len(records)} logged point{'s' * (len(records) != 1)}, last at step {steps[-1]}", fontsize=9)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    return True
