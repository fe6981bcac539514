"""Turning each question's sampled answers into one prediction, and accuracy into an interval.

Every strategy is a weighted vote over the parsable answers of a question,
``V(a) = Σ_{i: answer_i = a} w_i``, differing only in the weights: one per
vote for self-consistency, the length-normalised sequence probability
``exp(logprob / n_tokens)`` for weighted voting, and ``c0 + c1·s_i`` from a
ranker's score for ASC. Greedy is a vote of one.

Ties (answers sharing the top vote mass exactly) follow ``tie_rule``:

- ``split`` (the default, Dust into Gold's ``ASC.py``): a question scores
  ``1/|ties|`` when the reference is among the tied answers, the expected
  accuracy of a tie broken at random, and the prediction written is one of
  them drawn with the run's seed (the released code shuffles the samples).
  An accuracy then does not hang on the order the samples came back in.
- ``first``: the answer that appears first among the question's samples wins
  outright, as in the ``majority_vote`` filter (IWSI's rule), with which this
  shares its kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curator.errors import CuratorError
from curator.groups import AnswerDistribution

STRATEGIES = ("greedy", "self-consistency", "weighted", "ranked")

PRESETS: dict[str, tuple[float, float]] = {
    "sc": (1.0, 0.0),
    "score_sum": (0.0, 1.0),
    "asc": (1.0, 1.0),
    "asc2": (1.0, 2.0),
}
"""ASC's ``(c0, c1)`` (Dust into Gold): plain votes, summed ranker scores, both, or the score counted twice.

The four vote types of the released ``ASC.py`` (its flags 0, 3, 2 and 1)."""

TIE_DESCRIPTIONS = {
    "split": "split: a question tied between k answers scores 1/k when the reference is one of them "
    "(the prediction is one of them drawn with the seed)",
    "first": "first in group: among answers with the top vote, the one sampled first",
}
TIE_RULES = tuple(TIE_DESCRIPTIONS)


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
    """Per question: the predicted answer (null when nothing parsed), its share of the vote mass, the ties.

    ``tied_question`` and ``tied_answer`` list every answer that has its
    question's top mass (one entry per question without a tie).
    """

    prediction: pa.Array
    share: np.ndarray
    tied_question: np.ndarray
    tied_answer: pa.Array

    @property
    def ties(self) -> np.ndarray:
        """Per question: how many answers share the top vote (0 when nothing parsed)."""
        return np.bincount(self.tied_question, minlength=len(self.share))


def vote(
    ids: pa.Array,
    answers: pa.Array,
    weights: np.ndarray | None = None,
    *,
    tie_rule: str = "first",
    seed: int = 0,
) -> Votes:
    """The winning answer of every contiguous group of ``ids`` (in group order).

    ``tie_rule='split'`` picks among tied answers with a generator seeded by
    ``seed``; ``'first'`` takes the one sampled first.
    """
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {', '.join(TIE_RULES)}, not {tie_rule!r}")
    votes = AnswerDistribution.of(ids, answers, weights)
    keys = np.random.default_rng(seed).random(len(votes.code)) if tie_rule == "split" else None
    code, mass = votes.majority(tie_keys=keys)
    total = votes.group_total()
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, mass / total, np.nan)
    top = np.flatnonzero(votes.mass == mass[votes.group]) if len(votes.group) else np.zeros(0, np.int64)
    return Votes(votes.answer_of(code), share, votes.group[top], votes.answer_of(votes.code[top]))


def credit(votes: Votes, references: pa.Array, equal: Callable[[pa.Array, pa.Array], pa.Array]) -> np.ndarray:
    """Per question, the released rule's score: ``1/|ties|`` when the reference is one of the tied answers.

    Without a tie this is 1 for a right prediction and 0 otherwise, as for ``first``.
    """
    if isinstance(references, pa.ChunkedArray):
        references = references.combine_chunks()
    right = equal(votes.tied_answer, references.take(pa.array(votes.tied_question)))
    hit = np.zeros(len(votes.share), dtype=bool)
    hit[votes.tied_question[pc.fill_null(right, False).to_numpy(zero_copy_only=False)]] = True
    return np.where(hit, 1.0 / np.maximum(votes.ties, 1), 0.0)


Z95 = 1.959963984540054


def wilson_interval(correct: float, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: unlike the normal one, sensible near 0 and 1 and small n.

    ``correct`` may be fractional (split ties): the interval of that proportion.
    """
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))
