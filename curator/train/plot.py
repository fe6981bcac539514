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
    """Write the loss (and learning-rate) curve; False when matplotlib is missing or nothing was logged."""
    records = read_metrics(metrics_path)
    if not records:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn(
            "matplotlib is not installed: no loss curve (pip install 'rationale-curator[report]')",
            stacklevel=2,
        )
        return False
    steps = [r["step"] for r in records]
    fig, loss_axis = plt.subplots(figsize=(6, 3.5), dpi=120)
    loss_axis.plot(steps, [r["loss"] for r in records], color="tab:blue", label="loss")
    loss_axis.set_xlabel("optimiser step")
    loss_axis.set_ylabel("loss", color="tab:blue")
    lr_axis = loss_axis.twinx()
    lr_axis.plot(steps, [r["lr"] for r in records], color="tab:gray", linestyle="--", linewidth=0.8)
    lr_axis.set_ylabel("learning rate", color="tab:gray")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True
