"""Turning each question's sampled answers into one prediction, and accuracy into an interval.

Every strategy is a weighted vote over the parsable answers of a question,
``V(a) = Σ_{i: answer_i = a} w_i``, differing only in the weights: one per
vote for self-consistency, the length-normalised sequence probability
``exp(logprob / n_tokens)`` for weighted voting, and ``c0 + c1·s_i`` from a
ranker's score for ASC. Greedy is a vote of one. Ties go to the answer that
appears first among the question's samples, as in the ``majority_vote``
filter, with which this shares its kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curator.errors import CuratorError
from curator.groups import AnswerDistribution

STRATEGIES = ("greedy", "self-consistency", "weighted", "ranked")

PRESETS: dict[str, tuple[float, float]] = {"sc": (1.0, 0.0), "score_sum": (0.0, 1.0), "asc": (1.0, 1.0)}
"""ASC's ``(c0, c1)`` (Dust into Gold): plain votes, summed ranker scores, or both."""


def sequence_probability(logprob: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
    """``exp(logprob / n_tokens)``, the per-token geometric-mean probability of a completion."""
    if np.isnan(logprob).any() or np.isnan(n_tokens).any():
        raise CuratorError(
            "strategy 'weighted' needs each completion's log-probability and token count, "
            "which this backend did not return"
        )
    return np.exp(logprob / np.maximum(n_tokens, 1))


def ranked_weights(scores: np.ndarray, preset: str) -> np.ndarray:
    """``c0 + c1·s`` for the preset's coefficients."""
    c0, c1 = PRESETS[preset]
    return c0 + c1 * scores


@dataclass(frozen=True)
class Votes:
    """Per question: the predicted answer (null when nothing parsed) and its share of the vote mass."""

    prediction: pa.Array
    share: np.ndarray


def vote(ids: pa.Array, answers: pa.Array, weights: np.ndarray | None = None) -> Votes:
    """The winning answer of every contiguous group of ``ids`` (in group order)."""
    votes = AnswerDistribution.of(ids, answers, weights)
    code, mass = votes.majority()
    total = votes.group_total()
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, mass / total, np.nan)
    return Votes(votes.answer_of(code), share)


Z95 = 1.959963984540054


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: unlike the normal one, sensible near 0 and 1 and for small n."""
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))
