"""The trainer's settings: one dataclass shared by the YAML file, the CLI and the API.

Kept free of torch so that ``curator export`` and ``curator --help`` can import
the train package without paying for it. Defaults follow METHODS §4.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curator.errors import CuratorError
from curator.formats import FORMATS
from curator.lm.loading import DTYPES

PACKING = ("auto", "on", "off")

OBJECTIVES: dict[str, str] = {
    "sft": "curator.train.objectives:SFT",
    "nce": "curator.train.objectives:NCE",
    "ranker": "curator.train.ranker:Ranker",
    "ranker-pairwise": "curator.train.ranker:PairwiseRanker",
}
"""Objective name -> ``module:Class`` (a subclass of ``curator.train.objectives.Objective``).

Import paths rather than classes, so that naming the objectives (CLI
choices, config checks) does not import torch.
"""

# Changing these between a run and its resume would silently train something else.
RESUME_INVARIANT = (
    "model", "where", "format", "loss_on_prompt", "max_length", "objective", "teacher",
    "lora_r", "lora_alpha", "lora_dropout", "target_modules", "lr", "weight_decay",
    "warmup_ratio", "min_lr_ratio", "max_grad_norm", "epochs", "max_steps",
    "batch_tokens", "grad_accum", "packing", "seed", "dtype",
)


@dataclass
class TrainConfig:
    """Everything one training run depends on; recorded whole in ``manifest.json``."""

    data: str
    model: str
    output: str
    where: list[str] = field(default_factory=list)
    format: str = "natural"
    loss_on_prompt: bool = False
    max_length: int = 1024
    objective: str = "sft"
    teacher: str | None = None
    lora_r: int = 16
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    epochs: int = 1
    max_steps: int | None = None
    batch_tokens: int = 8192
    grad_accum: int = 1
    packing: str = "auto"
    attn_implementation: str | None = None
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    seed: int = 0
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    resume: bool = False
    merge: bool = False
    trust_remote_code: bool = False
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self._coerce()
        self._check()

    def _coerce(self) -> None:
        """YAML reads ``3e-4`` as a string and users write ``r: "16"``; take numbers as numbers."""
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            kind = float if spec.type == "float" else int if spec.type in ("int", "int | None") else None
            if kind is None or value is None or isinstance(value, bool):
                continue
            try:
                setattr(self, spec.name, kind(value))
            except (TypeError, ValueError):
                raise CuratorError(f"train: {spec.name} must be a number, got {value!r}") from None

    def _check(self) -> None:
        choices = {"format": FORMATS, "dtype": DTYPES, "packing": PACKING, "objective": tuple(OBJECTIVES)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise CuratorError(f"train: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        positive = ("max_length", "lora_r", "batch_tokens", "grad_accum", "epochs", "keep_checkpoints", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise CuratorError(f"train: {name} must be at least 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise CuratorError(f"train: max_steps must be at least 1, got {self.max_steps}")
        if self.lr <= 0:
            raise CuratorError(f"train: lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise CuratorError("train: warmup_ratio must be in [0, 1) and min_lr_ratio in [0, 1]")
        if self.save_every < 0:
            raise CuratorError(f"train: save_every must be 0 (only at the end) or more, got {self.save_every}")
        if self.dtype == "float16":
            # fp16 activations without loss scaling lose small gradients; bf16 has fp32's range.
            raise CuratorError("train: dtype float16 is not supported for training (use bfloat16 or float32)")
        if self.objective == "nce" and not self.teacher:
            raise CuratorError("train: objective 'nce' needs a teacher (--teacher MODEL_OR_ADAPTER)")

    @classmethod
    def from_sources(cls, yaml_path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
        """Merge a YAML file (keys are field names; ``-`` may stand for ``_``) with CLI overrides."""
        values: dict[str, Any] = {}
        if yaml_path is not None:
            values.update(_read_yaml(Path(yaml_path)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        missing = [name for name in ("data", "model", "output") if name not in values]
        if missing:
            raise CuratorError(f"train: missing {', '.join(missing)} (give them as options or in --config)")
        if isinstance(values.get("packing"), bool):
            values["packing"] = "on" if values["packing"] else "off"
        if isinstance(values.get("where"), str):
            values["where"] = [values["where"]]
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CuratorError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise CuratorError(f"{path}: not valid YAML ({exc})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise CuratorError(f"{path}: a training config must be a mapping of option: value")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {}
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise CuratorError(f"{path}: unknown training option '{key}'")
        values[name] = value
    return values
