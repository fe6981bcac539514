"""``compare --train-eval``: fine-tune on a recipe's curated rows, then evaluate the adapter.

This is the shape of IWSI's Table 1: the same base model, training settings
and test set for every recipe, so the accuracy column differs only by the
data each recipe kept. Training resumes from the adapter folder's
checkpoints, so re-running a comparison does not train a finished run again
(and refuses, naming the setting, when the curated data changed since).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from curator.evaluate.run import EvalConfig, run_eval


@dataclass
class TrainThenEvaluate:
    """Train and evaluate settings shared by every recipe of a comparison (checked before any build)."""

    model: str
    eval_data: Path
    strategy: str = "greedy"
    samples: int | None = None
    train_config: Path | None = None
    max_steps: int | None = None
    max_tokens: int = 256
    progress: bool = True

    def __post_init__(self) -> None:
        self.evaluation = EvalConfig(
            model=self.model,
            data=str(self.eval_data),
            task="",
            strategy=self.strategy,
            n=self.samples,
            max_tokens=self.max_tokens,
            output="",
            progress=self.progress,
        )

    def __call__(self, curated: Path, folder: Path, task: str) -> dict[str, Any]:
        from curator.train import TrainConfig, train

        adapter = folder / "adapter"
        overrides = {
            "data": str(curated),
            "model": self.model,
            "output": str(adapter),
            "max_steps": self.max_steps,
            "resume": True,
            "progress": self.progress,
        }
        config = TrainConfig.from_sources(self.train_config, overrides)
        train(config)
        evaluation = replace(
            self.evaluation,
            adapter=str(adapter),
            task=task,
            format=config.format,  # ask the way the adapter was taught
            output=str(folder / "eval"),
        )
        result = run_eval(evaluation)
        keys = ("accuracy", "ci95", "correct", "questions", "failed_requests")
        return {key: result.metrics[key] for key in keys}
