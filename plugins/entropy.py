"""``entropy`` (MoT; IWSI's Entropy-filter): keep the rationales of questions the model is sure of.

``H = -Σ p_a ln p_a`` over a group's parsable answers. The two sources differ
in more than the formula, and ``rule`` picks whose rule applies; each part of
it is also an option of its own, which overrides the rule's value:

============================  ===========  ======================  ===========
option                        ``project``  ``mot``                 ``iwsi``
============================  ===========  ======================  ===========
``normalize`` (H / ln n)      false        false                   true
``threshold``                 0.3          0.3                     1.0
``inclusive`` (≤, not <)      false        false                   true
``one_per_question``          false        true                    false
``require_marker``            (none)       ``"The answer is "``    (none)
============================  ===========  ======================  ===========

- MoT (LeeSureman/MoT, ``extract_demos_from_inference_result.py`` with
  ``--filter_no_trigger 1`` and ``entropy_threshold=0.3`` as its release
  scripts run it): completions without ``The answer is `` are removed first,
  a question is kept when ``H < 0.3``, and only its first rationale with the
  majority answer is kept, as one demonstration.
- IWSI (rubickkcibur/IWSI, ``filter_data.py``, mode ``Entropy``, default
  ``uncertainty_th`` 1.0): ``H / ln n <= threshold``, a group with n ≤ 1
  dropped, and every rationale with the majority answer kept. As
  ``H / ln n <= 1`` always holds, the default keeps every group with two or
  more parsable answers.
- ``project`` (the default): MoT's entropy and threshold, keeping every
  majority rationale (training a student wants the data; LMSI keeps all
  majority rows too). ``normalize: true`` without a ``rule`` means ``iwsi``.

Unparsable answers never count (MoT counts them as an answer of their own).
``require_marker: ""`` turns the marker check off under ``rule: mot``.

``keep_percent`` replaces the threshold by the project's exact percentile
cut (:func:`curator.filter.percentile_cut`) over the rows reaching the step,
pooled: the lowest ``floor(N * k / 100)`` rows by entropy pass, and rows tied
at the cut (whole questions share one entropy) are taken question by
question in an order set by ``seed``, so at most one question is split.
Rows that pass then keep the majority rule above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
from curator.filter import question_hashes
from curator.groups import AnswerDistribution, group_index, warn_repeated_samples

MOT_MARKER = "The answer is "
RULES: dict[str, dict[str, Any]] = {
    "project": {"normalize": False, "threshold": 0.3, "inclusive": False, "one_per_question": False,
                "require_marker": ""},
    "mot": {"normalize": False, "threshold": 0.3, "inclusive": False, "one_per_question": True,
            "require_marker": MOT_MARKER},
    "iwsi": {"normalize": True, "threshold": 1.0, "inclusive": True, "one_per_question": False,
             "require_marker": ""},
}
DEFAULT_THRESHOLD = RULES["project"]["threshold"]
GROUP_TIE_KEY = "_tie_group"
_ROW_BITS = np.uint64(24)  # low bits of a tie key order the rows within a question


@dataclass(kw_only=True)
class Entropy(Filter):
    name = "entropy"
    columns = ("answer_entropy", "_agrees", TIE_KEY, GROUP_TIE_KEY)
    scope = "group"
    score_meaning = {"answer_entropy": "lower"}
    rule: Literal["project", "mot", "iwsi"] | None = select_option(None)
    normalize: bool | None = None
    require_marker: str | None = None
    threshold: float | None = select_option(None)
    inclusive: bool | None = select_option(None)
    one_per_question: bool | None = select_option(None)
    keep_percent: float | None = select_option(None)
    seed: int = select_option(0)

    def __post_init__(self) -> None:
        # Resolve the rule into every option it sets, so the manifest shows the rule applied and the
        # score cache is keyed by the resolved scoring options.
        if self.rule is None:
            self.rule = "iwsi" if self.normalize else "project"
        preset = RULES[self.rule]
        for option, value in preset.items():
            if option == "threshold" and self.keep_percent is not None:
                continue
            if getattr(self, option) is None:
                setattr(self, option, value)

    def validate(self, step: str) -> None:
        if self.threshold is not None and self.keep_percent is not None:
            raise CuratorError(f"filter step '{step}': give 'threshold' or 'keep_percent', not both")
        check_percent(self.keep_percent, step)
        if self.threshold is not None:
            high = 1.0 if self.normalize else math.inf
            if not 0 <= self.threshold <= high:
                bound = "between 0 and 1 (the normalised entropy H / ln n)" if self.normalize else "0 or more"
                raise CuratorError(f"filter step '{step}': option 'threshold' must be {bound}, got {self.threshold}")

    def reads(self, batch: pa.RecordBatch) -> set[str]:
        names = {"id", "answer", "sample"}
        samples = batch.column("sample") if "sample" in batch.schema.names else None
        if self.require_marker or samples is None or samples.null_count:
            names.add("rationale")  # where the marker is looked for; and what tells apart rows without a sample
        return names

    def score(self, batch: pa.RecordBatch, context: FilterContext) -> dict[str, pa.Array]:
        answers = batch.column("answer")
        if self.require_marker:
            marked = pc.match_substring(batch.column("rationale"), self.require_marker)
            answers = pc.if_else(marked, answers, pa.scalar(None, answers.type))
        warn_repeated_samples(batch)
        votes = AnswerDistribution.of(batch.column("id"), answers)
        entropy = votes.entropy()
        if self.normalize:
            n = votes.group_total()
            with np.errstate(invalid="ignore", divide="ignore"):
                entropy = np.where(n > 1, entropy / np.log(n), np.nan)
        code, _ = votes.majority()
        agrees = (votes.row_code >= 0) & (votes.row_code == code[votes.row_group])
        row_entropy = entropy[votes.row_group]
        question = question_hashes(batch.column("id"))
        return {
            "answer_entropy": pa.array(row_entropy, mask=np.isnan(row_entropy)),
            "_agrees": pa.array(agrees),
            TIE_KEY: row_hashes(batch, question),
            GROUP_TIE_KEY: pa.array(question, pa.uint64()),
        }

    def fit(self, scores: ScoreColumns) -> dict[str, Any]:
        rule = {"rule": self.rule, "one_per_question": self.one_per_question}
        if self.keep_percent is None:
            comparison = "H <= threshold" if self.inclusive else "H < threshold"
            return {**rule, "threshold": self.threshold, "comparison": comparison}
        keys = self._tie_keys(scores.column(GROUP_TIE_KEY), scores.column(TIE_KEY))
        cut = percentile_cut(scores.numpy("answer_entropy"), self.keep_percent, keep="lowest", tie_keys=keys)
        return {**rule, **cut, "threshold": cut["cut"], "comparison": f"lowest {self.keep_percent} % of rows"}

    def select(self, batch: pa.RecordBatch, stats: Mapping[str, Any]) -> Selection:
        entropy = pc.fill_null(batch.column("answer_entropy"), np.nan).to_numpy(zero_copy_only=False)
        if self.keep_percent is None:
            with np.errstate(invalid="ignore"):
                confident = entropy <= stats["threshold"] if self.inclusive else entropy < stats["threshold"]
        else:
            keys = self._tie_keys(batch.column(GROUP_TIE_KEY), batch.column(TIE_KEY))
            confident = keep_at_cut(entropy, stats, keys)
        keep = confident & batch.column("_agrees").to_numpy(zero_copy_only=False)
        if self.one_per_question:
            keep = _first_per_group(keep, group_index(batch.column("id")))
        return Selection(keep=keep)

    def _tie_keys(self, question_hashes: Any, row_hashes: Any) -> np.ndarray:
        """Question-major keys: the question's seeded key above, the row's below, so tied questions go whole."""
        low = (np.uint64(1) << _ROW_BITS) - np.uint64(1)
        question = seeded_keys(question_hashes, self.seed) & ~low
        return question | (seeded_keys(row_hashes, self.seed) & low)


def _first_per_group(keep: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Only the first kept row of each group stays kept."""
    rows = np.flatnonzero(keep)
    first = rows[np.concatenate(([True], groups[rows][1:] != groups[rows][:-1]))] if rows.size else rows
    out = np.zeros_like(keep, dtype=bool)
    out[first] = True
    return out


@hookimpl
def register_filters(register: RegisterFilter) -> None:
    register(Entropy)
