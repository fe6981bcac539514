"""``reward_model`` (IWSI's RM-filter): a reward model scores each (question, rationale).

The reward model is a sequence classifier with one output (IWSI used
OpenAssistant/reward-model-deberta-v3-large-v2); ``reward`` is its logit. The
pair is encoded with the model's chat template when it has one (question as
the user turn, rationale as the assistant's), else as a text pair, which is
how DeBERTa-style reward models were trained.

Keeps the rows with ``reward >= min_reward`` when that is set, else the top
``keep_percent`` %: exactly ``floor(N * k / 100)`` rows, ties at the cut
broken by a ``seed``-ed hash of each row (``cut_rule: exact``; see
:func:`curator.filter.percentile_cut`). ``cut_rule: iwsi`` is the released
code's cut (IWSI's ``filter_data.py``, mode ``RM``): every row whose reward is
at least the one at index ``int(N * k / 100)`` of the rewards sorted from
best, ties kept; like the released code it also leaves out (and drops) a row
whose reward is exactly 0, which that code cannot tell from a row an earlier
filter dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from curator import (
    TIE_KEY,
    CuratorError,
    Filter,
    FilterContext,
    RegisterFilter,
    ScoreColumns,
    Selection,
    check_percent,
    hookimpl,
    keep_at_cut,
    percentile_cut,
    row_hashes,
    seeded_keys,
    select_option,
)
from curator.lm.options import ModelOptions
from curator.lm.pairs import encode_pairs


@dataclass(kw_only=True)
class RewardModel(ModelOptions, Filter):
    name = "reward_model"
    columns = ("reward", TIE_KEY)
    scope = "row"
    score_meaning = {"reward": "higher"}
    dependencies = ("torch", "transformers")
    extra = "lm"

    max_length: int = 1024
    keep_percent: float = select_option(80.0)
    min_reward: float | None = select_option(None)
    cut_rule: Literal["exact", "iwsi"] = select_option("exact")
    seed: int = select_option(0)

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
        return {"reward": pa.array(logits[:, 0], pa.float64()), TIE_KEY: row_hashes(batch)}

    def fit(self, scores: ScoreColumns) -> dict[str, Any]:
        if self.min_reward is not None:
            return {"rule": "reward >= min_reward", "keep": "highest", "cut": self.min_reward, "at_cut": "all"}
        values = self._rewards(scores.numpy("reward"))
        if self.cut_rule == "iwsi":
            return percentile_cut(values, self.keep_percent, keep="highest", rule="iwsi_inclusive")
        keys = seeded_keys(scores.column(TIE_KEY), self.seed)
        return percentile_cut(values, self.keep_percent, keep="highest", tie_keys=keys)

    def select(self, batch: pa.RecordBatch, stats: Mapping[str, Any]) -> Selection:
        values = self._rewards(batch.column("reward").to_numpy(zero_copy_only=False))
        return Selection(keep=keep_at_cut(values, stats, seeded_keys(batch.column(TIE_KEY), self.seed)))

    def _rewards(self, values: np.ndarray) -> np.ndarray:
        """The rewards selection reads: as scored, or with exact zeros left out under IWSI's cut."""
        values = np.asarray(values, dtype=np.float64)
        if self.cut_rule == "iwsi" and self.min_reward is None:
            return np.where(values == 0, np.nan, values)
        return values


@hookimpl
def register_filters(register: RegisterFilter) -> None:
    register(RewardModel)
