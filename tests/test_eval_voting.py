"""Voting rules and the confidence interval, against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
    # The four vote types of the released ASC.py: flags 0, 3, 2 and 1.
    assert PRESETS == {"sc": (1.0, 0.0), "score_sum": (0.0, 1.0), "asc": (1.0, 1.0), "asc2": (1.0, 2.0)}
    np.testing.assert_allclose(ranked_weights(scores, "asc"), 1 + scores)
    np.testing.assert_allclose(ranked_weights(scores, "asc2"), 1 + 2 * scores)
    np.testing.assert_allclose(ranked_weights(scores, "score_sum"), scores)
    ids = pa.array([0, 0, 0, 0], pa.int64())
    answers = pa.array(["a", "b", "b", "b"], pa.string())
    # Counting votes, "b" wins 3-1; by summed scores "a" wins 0.9 to 0.6; ASC: a 1.9, b 3.6.
    assert vote(ids, answers, ranked_weights(scores, "sc")).prediction.to_pylist() == ["b"]
    assert vote(ids, answers, ranked_weights(scores, "score_sum")).prediction.to_pylist() == ["a"]
    assert vote(ids, answers, ranked_weights(scores, "asc")).prediction.to_pylist() == ["b"]
    # One "a" with score 0.9 against two "b" with 0: asc gives a 1.9, b 2.0; asc2 gives a 2.8, b 2.0.
    two = pa.array(["a", "b", "b", "c"], pa.string())
    assert vote(ids, two, ranked_weights(np.array([0.9, 0.0, 0.0, 0.1]), "asc2")).prediction.to_pylist() == ["a"]
    assert vote(ids, two, ranked_weights(np.array([0.9, 0.0, 0.0, 0.1]), "asc")).prediction.to_pylist() == ["b"]


def _released_asc_credit(answers, weights, reference):
    """ASC.py's scoring of one question, transcribed: sum weights per answer, ties share the credit."""
    ranked = sorted(_totals(answers, weights).items(), key=lambda kv: kv[1], reverse=True)
    tied = {a for a, v in ranked if v == ranked[0][1]}
    return 1 / len(tied) if reference in tied else 0.0


@pytest.mark.parametrize("seed", range(5))
def test_split_credit_matches_the_released_rule(seed):
    from curator.evaluate.voting import credit

    rng = np.random.default_rng(seed)
    groups = [list(rng.choice(["1", "2", "3"], size=rng.integers(1, 7))) for _ in range(60)]
    references = [str(rng.choice(["1", "2", "3"])) for _ in groups]
    weights = [list(rng.choice([1.0, 2.0], size=len(g))) for g in groups]  # ties are frequent
    ids = pa.array([g for g, answers in enumerate(groups) for _ in answers], pa.int64())
    votes = vote(ids, pa.array([a for g in groups for a in g]), np.concatenate(weights), tie_rule="split", seed=seed)
    earned = credit(votes, pa.array(references), lambda a, b: pc.equal(a, b))
    expected = [_released_asc_credit(g, w, r) for g, w, r in zip(groups, weights, references, strict=True)]
    np.testing.assert_allclose(earned, expected)
    assert any(0 < e < 1 for e in expected)  # the sample really has ties to split
    predictions = votes.prediction.to_pylist()
    tops = [{a for a, v in _totals(g, w).items() if v == max(_totals(g, w).values())} for g, w in zip(groups, weights)]
    assert all(p in top for p, top in zip(predictions, tops, strict=True))


def _totals(answers, weights):
    totals: dict = {}
    for answer, weight in zip(answers, weights, strict=True):
        totals[answer] = totals.get(answer, 0.0) + weight
    return totals


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
