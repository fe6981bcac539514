"""``majority_vote`` (LMSI, self-consistency): keep rows that agree with their group's vote.

Unparsable answers never vote. Ties go to the answer that appears first in
the group (IWSI's rule). ``weight_by: logprob`` weights each vote by the
length-normalised sequence probability ``exp(logprob / n_tokens)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curator import Filter, FilterContext, ScoreColumns, Selection, check_percent, hookimpl, select_option
from curator.groups import AnswerDistribution

TIE_RULE = "first in group: among answers with the top vote, the one that appears first"


@dataclass(kw_only=True)
class MajorityVote(Filter):
    name = "majority_vote"
    columns = ("vote_answer", "vote_share")
    scope = "group"
    score_meaning = {"vote_answer": "categorical", "vote_share": "higher"}
    min_share: float | None = select_option(None)
    weight_by: Literal["logprob"] | None = None

    @property
    def requires(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("logprob", "n_tokens") if self.weight_by == "logprob" else ()

    def validate(self, step: str) -> None:
        if self.min_share is not None:
            check_percent(self.min_share * 100, step, "min_share (as a fraction)")

    def score(self, batch: pa.RecordBatch, context: FilterContext) -> dict[str, pa.Array]:
        weights = None
        if self.weight_by == "logprob":
            logprob = pc.fill_null(batch.column("logprob"), -np.inf).to_numpy()
            tokens = pc.fill_null(batch.column("n_tokens"), 1).to_numpy().clip(min=1)
            weights = np.exp(logprob / tokens)
        votes = AnswerDistribution.of(batch.column("id"), batch.column("answer"), weights)
        code, mass = votes.majority()
        with np.errstate(invalid="ignore", divide="ignore"):
            share = mass / votes.group_total()
        row_share = share[votes.row_group]
        return {
            "vote_answer": votes.answer_of(code[votes.row_group]),
            "vote_share": pa.array(row_share, mask=np.isnan(row_share)),
        }

    def fit(self, scores: ScoreColumns) -> dict[str, Any]:
        return {"tie_rule": TIE_RULE}

    def select(self, batch: pa.RecordBatch, stats: Mapping[str, Any]) -> Selection:
        keep = pc.fill_null(pc.equal(batch.column("answer"), batch.column("vote_answer")), False)
        if self.min_share is not None:
            keep = pc.and_(keep, pc.fill_null(pc.greater_equal(batch.column("vote_share"), self.min_share), False))
        return Selection(keep=keep)


@hookimpl
def register_filters(register: Callable[..., None]) -> None:
    register(MajorityVote)
