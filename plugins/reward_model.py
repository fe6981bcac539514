"""``reward_model`` (IWSI's RM-filter): a reward model scores each (question, rationale).

The reward model is a sequence classifier with one output (IWSI used
OpenAssistant/reward-model-deberta-v3-large-v2); ``reward`` is its logit. The
pair is encoded with the model's chat template when it has one (question as
the user turn, rationale as the assistant's), else as a text pair, which is
how DeBERTa-style reward models were trained. Keeps the top ``keep_percent``
%, or the rows with ``reward >= min_reward`` when that is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from curator import (
    CuratorError,
    Filter,
    FilterContext,
    ScoreColumns,
    Selection,
    check_percent,
    hookimpl,
    keep_by_threshold,
    percentile_threshold,
    select_option,
)
from curator.lm.options import ModelOptions
from curator.lm.pairs import encode_pairs


@dataclass(kw_only=True)
class RewardModel(ModelOptions, Filter):
    name = "reward_model"
    columns = ("reward",)
    scope = "row"
    score_meaning = {"reward": "higher"}
    dependencies = ("torch", "transformers")
    extra = "lm"

    max_length: int = 1024
    keep_percent: float = select_option(80.0)
    min_reward: float | None = select_option(None)

    def validate(self, step: str) -> None:
        check_percent(self.keep_percent, step)
        self.check_model_options(step)
        if self.max_length < 1:
            raise CuratorError(f"filter step '{step}': option 'max_length' must be positive")

    def score(self, batch: pa.RecordBatch, context: FilterContext) -> Mapping[str, Any]:
        from curator.lm.scoring import classifier_logits

        lm = self.sequence_classifier(context)
        sequences = encode_pairs(
            lm.tokenizer,
            batch.column("question").to_pylist(),
            batch.column("rationale").to_pylist(),
            self.max_length,
        )
        logits = classifier_logits(lm, sequences, token_budget=self.batch_tokens)
        if logits.shape[1] != 1:
            raise CuratorError(f"reward_model: '{self.model}' has {logits.shape[1]} outputs; a reward model has 1")
        return {"reward": pa.array(logits[:, 0], pa.float64())}

    def fit(self, scores: ScoreColumns) -> dict[str, Any]:
        if self.min_reward is not None:
            return {"cut": self.min_reward}
        return {"cut": percentile_threshold(scores.numpy("reward"), self.keep_percent, keep="highest")}

    def select(self, batch: pa.RecordBatch, stats: Mapping[str, Any]) -> Selection:
        values = np.asarray(batch.column("reward").to_numpy(zero_copy_only=False), dtype=np.float64)
        return Selection(keep=keep_by_threshold(values, stats["cut"], keep="highest"))


@hookimpl
def register_filters(register: Any) -> None:
    register(RewardModel)
