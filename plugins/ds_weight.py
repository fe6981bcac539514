"""``ds_weight`` (IWSI): keep the rationales the base model finds about as likely as human ones.

Every sample, validation and candidate alike, is formatted ``Q: {question}\\nA:
{rationale}`` and scored by the base model M: ``l_i`` is the mean per-token
cross-entropy over the whole text (question included, as in IWSI). With
``L_v`` the mean of ``l`` over a small human-written validation set,
``w' = clip(L_v / l_i, 0, clip_max)`` and ``ds_weight = w'`` when ``w' > 1``,
else ``min(1 / w', inverse_cap)``: 1 means "as surprising to M as human
data", larger means further from it in either direction. A sample with
``l_i = 0`` (nothing scored, or a perfect prediction) has ``w' = 0``, which
IWSI's released code drops outright (it never enters the pool the percentile
is taken over); here its ``ds_weight`` is null, which does the same.

The lowest ``keep_percent`` % of DS weights are kept, exactly
``floor(N * k / 100)`` of the N rows with a weight, ties at the cut broken by
a ``seed``-ed hash of each row (``cut_rule: exact``, see
:func:`curator.filter.percentile_cut`). ``cut_rule: iwsi`` is the released
code's cut instead: strictly under the weight at index ``int(N * k / 100)`` of
the sorted weights, so rows tied there are all dropped.

The validation set is a table in any input format (JSONL, Parquet, Arrow, a
saved dataset folder) with ``question`` and ``rationale``, or GSM8K-style
``question`` and ``answer`` (calculator
annotations ``<<…>>`` removed, ``#### N`` rewritten ``The answer is N.``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
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
from curator.dataset_shapes import gsm8k_rationale
from curator.filter import CutRule
from curator.formats import natural_texts
from curator.io import Source
from curator.lm.options import ModelOptions


def ds_weights(losses: np.ndarray, valid_loss: float, clip_max: float, inverse_cap: float) -> np.ndarray:
    """METHODS §3.6 steps 4 and 5, vectorised; NaN losses, and zero losses (``w' = 0``), give NaN (never kept)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.clip(valid_loss / losses, 0.0, clip_max)
        weights = np.where(ratio > 1, ratio, np.minimum(1.0 / ratio, inverse_cap))
    return np.where(losses == 0, np.nan, weights)


@dataclass(kw_only=True)
class DSWeight(ModelOptions, Filter):
    name = "ds_weight"
    columns = ("ds_loss", "ds_weight", TIE_KEY)
    scope = "row"
    score_meaning = {"ds_weight": "lower"}  # ds_loss is what the weight is made of, not a selection score
    dependencies = ("torch", "transformers")
    extra = "lm"

    valid: str
    adapter: str | None = None
    valid_limit: int | None = None
    max_length: int = 400
    clip_max: float = 2.0
    inverse_cap: float = 5.0
    keep_percent: float = select_option(80.0)
    cut_rule: Literal["exact", "iwsi"] = select_option("exact")
    seed: int = select_option(0)
    _valid: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def validate(self, step: str) -> None:
        check_percent(self.keep_percent, step)
        self.check_model_options(step)
        for option in ("max_length", "clip_max", "inverse_cap"):
            if getattr(self, option) <= 0:
                raise CuratorError(f"filter step '{step}': option '{option}' must be positive")
        if self.valid_limit is not None and self.valid_limit < 1:
            raise CuratorError(f"filter step '{step}': option 'valid_limit' must be positive")

    def score(self, batch: pa.RecordBatch, context: FilterContext) -> Mapping[str, Any]:
        from curator.lm.scoring import score_texts

        lm = self.causal_lm(context, adapter=self.adapter)
        if not self._valid:
            self._valid = self._score_valid(lm, context)
        prompts, completions = natural_texts(
            batch.column("question").to_pylist(), batch.column("rationale").to_pylist()
        )
        losses = score_texts(
            lm, prompts, completions, span="all", max_length=self.max_length, token_budget=self.batch_tokens
        ).mean_nll
        weights = ds_weights(losses, self._valid["L_v"], self.clip_max, self.inverse_cap)
        return {
            "ds_loss": pa.array(losses, pa.float64()),
            "ds_weight": pa.array(weights, pa.float64()),
            TIE_KEY: row_hashes(batch),
        }

    def _score_valid(self, lm: Any, context: FilterContext) -> dict[str, Any]:
        from curator.lm.scoring import score_texts

        path = context.resolve(self.valid)
        questions, rationales = read_validation_set(path, self.valid_limit)
        prompts, completions = natural_texts(questions, rationales)
        scored = score_texts(
            lm, prompts, completions, span="all", max_length=self.max_length, token_budget=self.batch_tokens
        )
        losses = scored.mean_nll
        if not np.isfinite(losses).any():
            raise CuratorError(f"{path}: no validation sample could be scored")
        return {
            "L_v": float(np.nanmean(losses)),
            "valid_rows": len(questions),
            "valid_truncated": int(scored.truncated.sum()),
        }

    def fit(self, scores: ScoreColumns) -> dict[str, Any]:
        rule: CutRule = "exact" if self.cut_rule == "exact" else "iwsi_strict"
        keys = seeded_keys(scores.column(TIE_KEY), self.seed)
        return percentile_cut(scores.numpy("ds_weight"), self.keep_percent, keep="lowest", rule=rule, tie_keys=keys)

    def select(self, batch: pa.RecordBatch, stats: Mapping[str, Any]) -> Selection:
        values = batch.column("ds_weight").to_numpy(zero_copy_only=False)
        return Selection(keep=keep_at_cut(values, stats, seeded_keys(batch.column(TIE_KEY), self.seed)))

    def describe(self) -> dict[str, Any]:
        return dict(self._valid)


def read_validation_set(path: Path, limit: int | None = None) -> tuple[list[str], list[str]]:
    """(questions, rationales) from a small table in any input format; GSM8K ``answer`` columns are cleaned."""
    table = Source.open(path, required=("question",)).read_table()
    names = table.schema.names
    if "rationale" in names:
        texts = table.column("rationale").to_pylist()
    elif "answer" in names:
        texts = [a and gsm8k_rationale(a) for a in table.column("answer").to_pylist()]
    else:
        raise CuratorError(f"{path}: the validation set needs a 'rationale' or GSM8K 'answer' column")
    pairs = [(q, t) for q, t in zip(table.column("question").to_pylist(), texts, strict=True) if q and t]
    pairs = pairs[:limit]
    if not pairs:
        raise CuratorError(f"{path}: the validation set is empty")
    return [q for q, _ in pairs], [t for _, t in pairs]


@hookimpl
def register_filters(register: RegisterFilter) -> None:
    register(DSWeight)
