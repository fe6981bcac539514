"""Voting rules and the confidence interval, against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from curator.errors import CuratorError
from curator.evaluate.voting import PRESETS, ranked_weights, sequence_probability, vote, wilson_interval


def _vote_by_hand(answers: list[str | None], weights: list[float]) -> str | None:
    totals: dict[str, float] = {}
    for answer, weight in zip(answers, weights, strict=True):
        if answer is not None:
            totals[answer] = totals.get(answer, 0.0) + weight
    if not totals:
        return None
    best = max(totals.values())
    return next(a for a in answers if a is not None and totals[a] == best)  # first sampled among the tied


@pytest.mark.parametrize("seed", range(5))
def test_weighted_vote_matches_hand_count(seed):
    rng = np.random.default_rng(seed)
    groups = [list(rng.choice(["1", "2", "3", None], size=rng.integers(1, 9))) for _ in range(40)]
    ids = pa.array([g for g, answers in enumerate(groups) for _ in answers], pa.int64())
    answers = pa.array([a for answers in groups for a in answers], pa.string())
    weights = rng.choice([0.5, 1.0, 1.5], size=len(answers))
    votes = vote(ids, answers, weights)
    offset, expected = 0, []
    for group in groups:
        expected.append(_vote_by_hand(group, list(weights[offset : offset + len(group)])))
        offset += len(group)
    assert votes.prediction.to_pylist() == expected


def test_ties_go_to_the_first_sampled_answer_and_unparsable_never_votes():
    ids = pa.array([0, 0, 0, 0, 1, 1], pa.int64())
    answers = pa.array(["7", "5", "5", "7", None, None], pa.string())
    votes = vote(ids, answers)
    assert votes.prediction.to_pylist() == ["7", None]
    assert votes.share[0] == 0.5 and math.isnan(votes.share[1])


def test_presets_and_asc_weights():
    scores = np.array([0.9, 0.2, 0.3, 0.1])
    assert PRESETS == {"sc": (1.0, 0.0), "score_sum": (0.0, 1.0), "asc": (1.0, 1.0)}
    np.testing.assert_allclose(ranked_weights(scores, "asc"), 1 + scores)
    np.testing.assert_allclose(ranked_weights(scores, "score_sum"), scores)
    ids = pa.array([0, 0, 0, 0], pa.int64())
    answers = pa.array(["a", "b", "b", "b"], pa.string())
    # Counting votes, "b" wins 3-1; by summed scores "a" wins 0.9 to 0.6; ASC: a 1.9, b 3.6.
    assert vote(ids, answers, ranked_weights(scores, "sc")).prediction.to_pylist() == ["b"]
    assert vote(ids, answers, ranked_weights(scores, "score_sum")).prediction.to_pylist() == ["a"]
    assert vote(ids, answers, ranked_weights(scores, "asc")).prediction.to_pylist() == ["b"]


def test_sequence_probability_is_the_per_token_geometric_mean():
    logprob, tokens = np.array([-2.0, -9.0]), np.array([4.0, 3.0])
    np.testing.assert_allclose(sequence_probability(logprob, tokens), [math.exp(-0.5), math.exp(-3.0)])
    with pytest.raises(CuratorError, match="log-probability"):
        sequence_probability(np.array([np.nan]), np.array([3.0]))


@pytest.mark.parametrize(
    ("correct", "total", "expected"),
    # Wilson score intervals (z = 1.96) as tabulated by Newcombe (1998), Statistics in Medicine 17, Table I.
    [
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_interval_matches_published_values(correct, total, expected):
    low, high = wilson_interval(correct, total)
    assert low == pytest.approx(expected[0], abs=1e-4)
    assert high == pytest.approx(expected[1], abs=1e-4)
