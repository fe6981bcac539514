"""The trainer's settings: one dataclass shared by the YAML file, the CLI and the API.

Kept free of torch so that ``curator export`` and ``curator --help`` can import
the train package without paying for it. Defaults follow METHODS §4.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curator.errors import CuratorError
from curator.formats import FORMATS
from curator.lm.loading import DTYPES, NAT_CANNOT_MERGE, check_device
from curator.settings import check_bounds, read_yaml_file, setting

PACKING = ("auto", "on", "off")

OBJECTIVES: dict[str, str] = {
    "sft": "curator.train.objectives:SFT",
    "nce": "curator.train.objectives:NCE",
    "ranker": "curator.train.ranker:Ranker",
    "ranker-pairwise": "curator.train.ranker:PairwiseRanker",
    "nat": "curator.train.nat:NAT",
}
"""Objective name -> ``module:Class`` (a subclass of ``curator.train.objectives.Objective``).

Import paths rather than classes, so that naming the objectives (CLI
choices, config checks) does not import torch.
"""

# Changing these between a run and its resume would silently train something else. The run's
# length (epochs, max_steps) may change: a longer one extends the run (see loop.learning_rate).
# An objective adds its own (Objective.fingerprint: NAT's settings and its negative adapter's content).
RESUME_INVARIANT = (
    "model", "where", "format", "loss_on_prompt", "max_length", "objective", "teacher",
    "lora_r", "lora_alpha", "lora_dropout", "target_modules", "lr", "weight_decay",
    "warmup_ratio", "min_lr_ratio", "max_grad_norm",
    "batch_tokens", "grad_accum", "packing", "seed", "dtype",
)


@dataclass
class TrainConfig:
    """Everything one training run depends on; recorded whole in ``manifest.json``.

    The fields with help text are also ``curator train`` options; the rest
    are set in the YAML file (``--config``) or the API.
    """

    data: list[str] = setting(
        help="Rows to train on: Parquet, JSONL, Arrow, a saved dataset folder, hf:NAME, or a build's output folder "
        "(its curated.parquet; with the ranker objectives curated.parquet and rejected.parquet, the "
        "positives and negatives a ranker needs); repeatable, the rows of every file in order."
    )
    model: str = setting(help="Base model: hub name or local folder.")
    output: str = setting(help="Folder for the adapter, checkpoints, metrics.jsonl, loss.png, manifest.json.")
    data_config: str | None = setting(
        None, help="The config (subset) of an hf:NAME --data, e.g. main for hf:openai/gsm8k (--config is the settings file)."
    )
    split: str | None = setting(None, help="The split of an hf:NAME --data, e.g. train (default: its only split).")
    where: list[str] = setting(
        default_factory=list, help="Keep rows where COLUMN=VALUE (or !=, null); repeatable, all must hold."
    )
    format: str = setting("natural", choices=FORMATS, help="Text layout of a sample's prompt and completion.")
    loss_on_prompt: bool = setting(False, help="Also learn the prompt tokens.")
    max_length: int = setting(1024, minimum=1, help="Longest sample in tokens; longer ones are truncated.")
    objective: str = setting(
        "sft",
        choices=tuple(OBJECTIVES),
        help="sft; nce (needs --teacher); ranker or ranker-pairwise (the ASC ranker: rows with a 'correct' "
        "label, both kinds, e.g. a build folder); nat (needs --negative-adapter).",
    )
    teacher: str | None = setting(
        None, help="NCE teacher P: a model folder, or a PEFT or NAT adapter folder on the same base."
    )
    negative_adapter: str | None = setting(
        None,
        help="--objective nat: the frozen negative LoRA (PEFT folder), e.g. trained with "
        "--where dropped_by=correctness on rejected.parquet.",
    )
    nat_width: int = 128
    """NAT's integration width (the released code's 128)."""
    nat_negative_dropout: bool = True
    """Dropout on the frozen negative branch's input while training NAT, as the released code has it."""
    lora_r: int = setting(16, minimum=1, help="LoRA rank.")
    lora_alpha: int = setting(16, help="LoRA alpha: the update is scaled by alpha / r.")
    lora_dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    lr: float = setting(3e-4, above=0.0, help="Peak learning rate: linear warmup, then cosine decay.")
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    epochs: int = setting(1, minimum=1, help="Passes over the data (unless --max-steps is given).")
    max_steps: int | None = setting(
        None, minimum=1, help="Optimiser steps (overrides --epochs); with --resume, a larger value extends a run."
    )
    batch_tokens: int | None = setting(
        None,
        minimum=1,
        help="Token budget of one micro-batch (padding counted when padded; default: the largest that fits the "
        "memory available, estimated from the model's shape).",
    )
    grad_accum: int = setting(1, minimum=1, help="Micro-batches per optimiser step.")
    packing: str = setting("auto", choices=PACKING, help="Pack samples into rows; auto: when the attention is varlen (flash).")
    attn_implementation: str | None = None
    dtype: str = setting("auto", choices=DTYPES, help="Base weights: auto is bf16 on CUDA, fp32 on CPU (not float16).")
    gradient_checkpointing: bool | None = setting(
        None,
        help="Recompute activations in the backward pass: less memory, slower (default: on only when the memory "
        "available demands it).",
    )
    seed: int = setting(0, help="Seed of the LoRA initialisation and the data order.")
    save_every: int = setting(500, minimum=0, help="Checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = 2
    log_every: int = setting(10, minimum=1, help="Write metrics every N steps.")
    resume: bool = setting(False, flag="--resume", help="Continue from the last checkpoint in --output.")
    merge: bool = setting(False, help="Also save the merged model under OUTPUT/merged.")
    trust_remote_code: bool = setting(False, help="Run the model repo's own code.")
    device: str | None = setting(None, help="cuda, cuda:1, cpu (default: a GPU when there is one).")
    progress: bool | None = setting(None, help="Progress bar on stderr (default: when stderr is a terminal).")

    def __post_init__(self) -> None:
        self._coerce()
        self._check()

    def _coerce(self) -> None:
        """YAML reads ``3e-4`` as a string and users write ``r: "16"``; take numbers as numbers.

        ``data`` may be one path or several.
        """
        if isinstance(self.data, (str, Path)):
            self.data = [str(self.data)]
        self.data = [str(path) for path in self.data]
        if not self.data:
            raise CuratorError("train: --data names no file")
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
        check_bounds(self, "train")
        check_device(self.device)
        if self.keep_checkpoints < 1:
            raise CuratorError(f"train: keep_checkpoints must be at least 1, got {self.keep_checkpoints}")
        if not 0 <= self.warmup_ratio < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise CuratorError("train: warmup_ratio must be in [0, 1) and min_lr_ratio in [0, 1]")
        if self.dtype == "float16":
            # fp16 activations without loss scaling lose small gradients; bf16 has fp32's range.
            raise CuratorError("train: dtype float16 is not supported for training (use bfloat16 or float32)")
        if self.objective == "nce" and not self.teacher:
            raise CuratorError("train: objective 'nce' needs a teacher (--teacher MODEL_OR_ADAPTER)")
        if (self.objective == "nat") != bool(self.negative_adapter):
            raise CuratorError(
                "train: objective 'nat' needs --negative-adapter DIR"
                if self.objective == "nat"
                else f"train: --negative-adapter is for objective 'nat', not {self.objective!r}"
            )
        if self.objective == "nat" and self.merge:
            raise CuratorError(f"train: {NAT_CANNOT_MERGE}; drop --merge")
        if self.nat_width < 1:
            raise CuratorError(f"train: nat_width must be at least 1, got {self.nat_width}")

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
        for name in ("where", "data"):
            if isinstance(values.get(name), str):
                values[name] = [values[name]]
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What a run did: steps taken (all runs of a resumed one), tokens seen, the last logged loss."""

    output: Path
    steps: int
    tokens: int
    loss: float | None
    wall_time_s: float


def _read_yaml(path: Path) -> dict[str, Any]:
    loaded = read_yaml_file(path, "training config")
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
