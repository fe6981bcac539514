"""``compare --train-eval``: fine-tune on a recipe's curated rows, then evaluate the adapter.

This is the shape of IWSI's Table 1: the same base model, training settings
and test set for every recipe, so the accuracy column differs only by the
data each recipe kept. Training resumes from the adapter folder's
checkpoints, so re-running a comparison does not train a finished run again
(and refuses, naming the setting, when the curated data changed since).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from curator.evaluate.config import EvalConfig
from curator.evaluate.run import run_eval
from curator.report.config import CompareConfig


class TrainThenEvaluate:
    """Train and evaluate settings shared by every recipe of a comparison (checked before any build)."""

    def __init__(self, config: CompareConfig) -> None:
        assert config.model is not None and config.eval_data is not None  # CompareConfig checks
        self.config = config
        self.evaluation = EvalConfig(
            model=config.model,
            data=config.eval_data,
            task="",
            strategy=config.strategy,
            n=config.n,
            max_tokens=config.max_tokens,
            output="",
            progress=config.progress,
        )

    def __call__(self, curated: Path, folder: Path, task: str) -> dict[str, Any]:
        from curator.train import run_train

        adapter = folder / "adapter"
        config = self._train_config(curated, adapter)
        run_train(config)
        return self._evaluate(folder, task, config.format, adapter)

    def base(self, folder: Path, task: str) -> dict[str, Any]:
        """The base model with no adapter, asked as the adapters were taught: what training added."""
        return self._evaluate(folder, task, self._train_config(folder, folder).format, None)

    def _train_config(self, curated: Path, adapter: Path) -> Any:
        from curator.train import TrainConfig

        overrides = {
            "data": str(curated),
            "model": self.config.model,
            "output": str(adapter),
            "max_steps": self.config.max_steps,
            "resume": adapter.exists(),  # an earlier comparison's run: continue it rather than train again
            "progress": self.config.progress,
        }
        return TrainConfig.from_sources(self.config.train_config, overrides)

    def _evaluate(self, folder: Path, task: str, format: str, adapter: Path | None) -> dict[str, Any]:
        evaluation = replace(
            self.evaluation,
            adapter=str(adapter) if adapter else None,
            task=task,
            format=format,  # ask the way the adapter was taught
            output=str(folder / "eval"),
        )
        result = run_eval(evaluation)
        keys = ("accuracy", "ci95", "correct", "questions", "failed_requests")
        return {
            **{key: result.metrics[key] for key in keys},
            "predictions": str(result.predictions),
            "adapter": str(adapter) if adapter else None,
        }
