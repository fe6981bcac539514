"""Where a comparison's data and models came from: the generation run, and each training run.

Both are read from manifests the other commands already wrote: ``curator
generate`` writes ``manifest.json`` beside ``candidates.parquet``, and
``curator train`` writes one in each adapter folder. A report only reads
them; nothing is recomputed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRAIN_SETTINGS = (
    "model", "objective", "format", "loss_on_prompt", "max_length", "lora_r", "lora_alpha", "lora_dropout",
    "target_modules", "lr", "min_lr_ratio", "warmup_ratio", "weight_decay", "epochs", "max_steps",
    "batch_tokens", "grad_accum", "packing", "seed", "dtype",
)  # fmt: skip
"""The training settings a reader compares runs by (the rest are in each adapter's manifest)."""
EVAL_SETTINGS = ("model", "data", "strategy", "n", "max_tokens", "format")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class Generation:
    """What ``curator generate`` recorded for the candidates: settings, counts, tokens and cost."""

    manifest_path: Path
    settings: Mapping[str, Any]
    counts: Mapping[str, Any]
    usage: Mapping[str, Any]
    """Over every run that wrote the candidates file (a resumed generation included)."""


def find_generation(candidates: str | Path) -> Generation | None:
    """The generate manifest beside a candidates file, when that file is what it wrote."""
    path = Path(candidates)
    manifest = read_json(path.parent / "manifest.json")
    if not manifest or manifest.get("command") != "generate":
        return None
    if manifest.get("outputs", {}).get("candidates") != path.name:
        return None
    return Generation(
        path.parent / "manifest.json",
        manifest.get("settings", {}),
        manifest.get("counts", {}),
        manifest.get("usage_all_runs") or manifest.get("usage") or {},
    )


@dataclass
class TrainingRun:
    """One adapter of ``--train-eval``: its settings and outcome, and the files to link."""

    name: str
    adapter: Path
    manifest: Mapping[str, Any]

    @property
    def config(self) -> Mapping[str, Any]:
        return self.manifest.get("config", {})

    @property
    def loss_curve(self) -> Path | None:
        path = self.adapter / "loss.png"
        return path if path.exists() else None


def training_runs(evaluations: Mapping[str, Mapping[str, Any]]) -> list[TrainingRun]:
    """The training runs behind the evaluations that trained an adapter, in order."""
    runs = []
    for name, metrics in evaluations.items():
        if not metrics.get("adapter"):
            continue
        adapter = Path(metrics["adapter"])
        manifest = read_json(adapter / "manifest.json")
        if manifest is not None:
            runs.append(TrainingRun(name, adapter, manifest))
    return runs


def shared_settings(configs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[tuple[str, str]]:
    """(setting, value) for each key any config has; values that differ are listed per config."""
    rows = []
    for key in keys:
        values = [c.get(key) for c in configs]
        if all(v is None for v in values):
            continue
        shown = [_text(v) for v in values]
        rows.append((key, shown[0] if len(set(shown)) == 1 else " / ".join(shown)))
    return rows


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "—"
    return "—" if value is None else str(value)
