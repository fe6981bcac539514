"""``loss.png`` shows a run's loss even when it logged a single point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curator.train.plot import plot_loss

LOSS_BLUE = np.array([31, 119, 180]) / 255  # matplotlib's tab:blue, the loss line's colour


def _loss_pixels(path) -> int:
    """Pixels of the loss colour inside the plot area (the axis label on the left is that colour too)."""
    from matplotlib.image import imread

    pixels = imread(path)[..., :3]
    inside = pixels[:, int(pixels.shape[1] * 0.15) : int(pixels.shape[1] * 0.85)]
    return int((np.abs(inside - LOSS_BLUE).max(axis=-1) < 0.08).sum())


@pytest.mark.parametrize("steps", [[3], [1, 3], list(range(0, 401, 10))])
def test_loss_curve_draws_every_logged_point(tmp_path, steps):
    pytest.importorskip("matplotlib")
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "loss": 2.0 / (1 + s), "lr": 1e-4}) + "\n" for s in steps))
    assert plot_loss(metrics, tmp_path / "loss.png")
    assert _loss_pixels(tmp_path / "loss.png") > 20 * min(len(steps), 3)


def test_nothing_logged_draws_nothing(tmp_path):
    assert not plot_loss(tmp_path / "metrics.jsonl", tmp_path / "loss.png")
    assert not (tmp_path / "loss.png").exists()
