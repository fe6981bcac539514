"""What one ``curator compare`` run compares, and how (``--train-eval``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from curator.errors import CuratorError
from curator.evaluate.voting import STRATEGIES
from curator.settings import check_bounds, setting


@dataclass(frozen=True)
class CompareConfig:
    """Recipes to build over the same candidates, and the optional train-then-evaluate of each."""

    recipes: tuple[str, ...] = setting(argument=True, help="The recipes, built over the same candidates.")
    output: str = setting(help="Folder for the builds and the report.")
    overrides: tuple[str, ...] = setting(
        (), flag="--set", metavar="KEY=VALUE", help="Override a key in every recipe, e.g. batch_rows=4096; repeatable."
    )
    train_eval: bool = setting(
        False,
        flag="--train-eval",
        help="Train an adapter on each recipe's curated rows and on every candidate; evaluate each, and the base model.",
    )
    model: str | None = setting(None, help="--train-eval: the base model to fine-tune (path or hub name).")
    eval_data: str | None = setting(None, help="--train-eval: the test set (question, reference).")
    strategy: str = setting(
        "greedy",
        choices=tuple(s for s in STRATEGIES if s != "ranked"),
        help="--train-eval: how each adapter is evaluated.",
    )
    n: int | None = setting(None, minimum=1, help="--train-eval: samples per question (default 16; greedy takes 1).")
    train_config: str | None = setting(None, help="--train-eval: a TRAIN.yaml for every run.")
    max_steps: int | None = setting(None, minimum=1, help="--train-eval: optimiser steps per run.")
    max_tokens: int = setting(256, minimum=1, help="--train-eval: tokens per answer.")
    progress: bool | None = setting(None, help="Progress bars on stderr (default: when stderr is a terminal).")

    def __post_init__(self) -> None:
        if not self.recipes:
            raise CuratorError("compare: give at least one recipe")
        check_bounds(self, "compare")
        if self.train_eval and not (self.model and self.eval_data):
            raise CuratorError("compare --train-eval needs --model and --eval-data")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
