"""``majority_vote`` (LMSI, self-consistency): keep rows that agree with their group's vote.

Unparsable answers never vote. Ties go to the answer that appears first in
the group (IWSI's rule). Answers vote as the task canonicalises them, so
``2.5`` and ``2`` are two answers; IWSI's released code (``filter_data.py``)
votes on ``int(float(answer))``, which merges them and makes ``2.5`` agree
with a gold ``2``: a quirk the project does not reproduce.

``weight_by: logprob`` weights each vote by the length-normalised sequence
probability ``exp(logprob / n_tokens)``. A row with a null ``logprob`` has no
weight (its vote counts 0); a NaN or infinite ``logprob`` is refused, naming
the row, since one such value would decide its group's vote on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curator import (
    CuratorError,
    Filter,
    FilterContext,
    RegisterFilter,
    ScoreColumns,
    Selection,
    check_range,
    hookimpl,
    select_option,
)
from curator.groups import AnswerDistribution, warn_repeated_samples

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
        check_range(self.min_share, 0, 1, step, "min_share")

    def reads(self, batch: pa.RecordBatch) -> tuple[str, ...]:
        return ("id", "answer", "sample", "logprob", "n_tokens")

    def score(self, batch: pa.RecordBatch, context: FilterContext) -> dict[str, pa.Array]:
        weights = None
        if self.weight_by == "logprob":
            logprob = pc.fill_null(batch.column("logprob"), -np.inf).to_numpy()
            _refuse_non_finite(batch, logprob)
            tokens = pc.fill_null(batch.column("n_tokens"), 1).to_numpy().clip(min=1)
            weights = np.exp(logprob / tokens)
        warn_repeated_samples(batch)
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


def _refuse_non_finite(batch: pa.RecordBatch, logprob: np.ndarray) -> None:
    """Stop at the first NaN or infinite logprob (a null was filled with -inf and is allowed)."""
    given = batch.column("logprob").is_valid().to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(given & ~np.isfinite(logprob))
    if bad.size:
        row = int(bad[0])
        sample = f" sample {batch.column('sample')[row].as_py()}" if "sample" in batch.schema.names else ""
        raise CuratorError(
            f"majority_vote: row with id '{batch.column('id')[row].as_py()}'{sample} has logprob "
            f"{logprob[row]}; weight_by: logprob needs finite log-probabilities (or null for no weight)"
        )


@hookimpl
def register_filters(register: RegisterFilter) -> None:
    register(MajorityVote)
