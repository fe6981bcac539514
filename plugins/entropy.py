"""``entropy`` (MoT; IWSI's Entropy-filter): keep confident groups' majority rows.

``H = -Σ p_a ln p_a`` over a group's parsable answers. MoT keeps a group when
``H < threshold`` (default 0.3); IWSI's baseline normalises by ``ln n`` and
drops groups with ``n <= 1``. ``keep_percent`` keeps the lowest k% of rows by
entropy instead of a fixed threshold. Within a kept group only the rows that
agree with the majority answer stay, as in both sources.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
from curator.groups import AnswerDistribution

DEFAULT_THRESHOLD = 0.3


@dataclass(kw_only=True)
class Entropy(Filter):
    name = "entropy"
    columns = ("answer_entropy", "_agrees")
    scope = "group"
    score_meaning = {"answer_entropy": "lower"}
    normalize: bool = False
    threshold: float | None = select_option(None)
    keep_percent: float | None = select_option(None)

    def validate(self, step: str) -> None:
        if self.threshold is not None and self.keep_percent is not None:
            raise CuratorError(f"filter step '{step}': give 'threshold' or 'keep_percent', not both")
        check_percent(self.keep_percent, step)

    def score(self, batch: pa.RecordBatch, context: FilterContext) -> dict[str, pa.Array]:
        votes = AnswerDistribution.of(batch.column("id"), batch.column("answer"))
        entropy = votes.entropy()
        if self.normalize:
            n = votes.group_total()
            with np.errstate(invalid="ignore", divide="ignore"):
                entropy = np.where(n > 1, entropy / np.log(n), np.nan)
        code, _ = votes.majority()
        agrees = (votes.row_code >= 0) & (votes.row_code == code[votes.row_group])
        row_entropy = entropy[votes.row_group]
        return {"answer_entropy": pa.array(row_entropy, mask=np.isnan(row_entropy)), "_agrees": pa.array(agrees)}

    def fit(self, scores: ScoreColumns) -> dict[str, Any]:
        if self.keep_percent is None:
            return {"threshold": DEFAULT_THRESHOLD if self.threshold is None else self.threshold, "rule": "H < threshold"}
        cut = percentile_threshold(scores.numpy("answer_entropy"), self.keep_percent, keep="lowest")
        return {"threshold": cut, "rule": f"H <= the {self.keep_percent}th percentile"}

    def select(self, batch: pa.RecordBatch, stats: Mapping[str, Any]) -> Selection:
        entropy = pc.fill_null(batch.column("answer_entropy"), np.nan).to_numpy(zero_copy_only=False)
        if self.keep_percent is None:
            with np.errstate(invalid="ignore"):
                confident = entropy < stats["threshold"]
        else:
            confident = keep_by_threshold(entropy, stats["threshold"], keep="lowest")
        return Selection(keep=confident & batch.column("_agrees").to_numpy(zero_copy_only=False))


@hookimpl
def register_filters(register: Callable[..., None]) -> None:
    register(Entropy)
