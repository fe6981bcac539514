"""correctness, majority_vote and entropy, checked against plain-Python versions of METHODS §3.1–3.3."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from curator.testing import make_candidates, manifest_of, run_filter


def random_groups(seed: int, groups: int = 120) -> list[list[str | None]]:
    rng = np.random.default_rng(seed)
    return [[None if rng.random() < 0.15 else str(rng.integers(0, 4)) for _ in range(rng.integers(1, 10))]
            for _ in range(groups)]


def expected_vote(group: list[str | None], weights: list[float] | None = None) -> tuple[str | None, float]:
    mass: dict[str, float] = {}
    for i, answer in enumerate(group):
        if answer is not None:
            mass[answer] = mass.get(answer, 0.0) + (1.0 if weights is None else weights[i])
    if not mass:
        return None, math.nan
    top = max(mass.values())
    winner = next(a for a in group if a is not None and mass[a] == top)  # first in group wins ties
    return winner, top / sum(mass.values())


def test_correctness_keeps_equal_answers_and_rejects_the_rest():
    table = make_candidates([["18", "18.0", "17", None], ["-3", "3"]], references=["18", "-3"])
    result = run_filter("correctness", table)
    assert result.column("correct").to_pylist() == [True, True, False, False, True, False]
    assert result.column("keep").to_pylist() == result.column("correct").to_pylist()
    assert result.column("dropped_by").to_pylist() == [None, None, "correctness", "correctness", None, "correctness"]


@pytest.mark.parametrize("seed", [0, 1])
def test_majority_vote_matches_plain_python(seed):
    groups = random_groups(seed)
    result = run_filter("majority_vote", make_candidates(groups), batch_rows=50)
    votes = result.column("vote_answer").to_pylist()
    shares = result.column("vote_share").to_pylist()
    keep = result.column("keep").to_pylist()
    row = 0
    for group in groups:
        winner, share = expected_vote(group)
        for answer in group:
            assert votes[row] == winner
            assert (shares[row] is None) if winner is None else shares[row] == pytest.approx(share)
            assert keep[row] == (answer is not None and answer == winner)
            row += 1
    assert manifest_of(result)["steps"][0]["stats"]["tie_rule"].startswith("first in group")


def test_majority_vote_tie_goes_to_first_in_group_and_unparsable_never_votes():
    result = run_filter("majority_vote", make_candidates([["2", "1", "1", "2", None, None, None]]))
    assert set(result.column("vote_answer").to_pylist()) == {"2"}
    assert result.column("vote_share").to_pylist()[0] == pytest.approx(0.5)
    assert result.column("keep").to_pylist() == [True, False, False, True, False, False, False]


def test_majority_vote_min_share():
    table = make_candidates([["1", "1", "2"], ["3", "3", "3", "4"]])
    result = run_filter("majority_vote", table, min_share=0.7)
    assert result.column("keep").to_pylist() == [False, False, False, True, True, True, False]


def test_weighted_vote_uses_length_normalised_probability():
    groups = [["1", "2", "2"], ["5", "6"]]
    logprob = [-1.0, -30.0, -40.0, -2.0, -2.0]
    tokens = [10, 10, 10, 1, 4]
    table = make_candidates(groups, logprob=logprob, n_tokens=tokens)
    result = run_filter("majority_vote", table, weight_by="logprob")
    weights = [math.exp(lp / n) for lp, n in zip(logprob, tokens)]
    for g, (start, end) in zip(groups, [(0, 3), (3, 5)]):
        winner, share = expected_vote(g, weights[start:end])
        assert result.column("vote_answer").to_pylist()[start] == winner
        assert result.column("vote_share").to_pylist()[start] == pytest.approx(share)
    assert result.column("vote_answer").to_pylist()[0] == "1"  # one confident vote beats two unlikely ones
    assert result.column("vote_answer").to_pylist()[3] == "6"  # unweighted, the tie would go to "5"


def test_weighted_vote_needs_logprob_columns():
    from curator import CuratorError

    with pytest.raises(CuratorError, match="needs input column 'logprob'"):
        run_filter("majority_vote", make_candidates([["1"]]), weight_by="logprob")


def entropy_of(group: list[str | None]) -> tuple[float, int]:
    counts = Counter(a for a in group if a is not None)
    n = sum(counts.values())
    return (-sum(c / n * math.log(c / n) for c in counts.values()) if n else math.nan), n


@pytest.mark.parametrize("seed", [0, 3])
def test_entropy_mot_threshold_matches_plain_python(seed):
    groups = random_groups(seed)
    result = run_filter("entropy", make_candidates(groups), threshold=0.6)
    entropy = result.column("answer_entropy").to_pylist()
    keep = result.column("keep").to_pylist()
    row = 0
    for group in groups:
        h, _ = entropy_of(group)
        winner, _ = expected_vote(group)
        for answer in group:
            assert (entropy[row] is None) if math.isnan(h) else entropy[row] == pytest.approx(h)
            assert keep[row] == (not math.isnan(h) and h < 0.6 and answer == winner)
            row += 1


def test_entropy_default_threshold_is_mots():
    # H of a 3:1 split is 0.562 (> 0.3: dropped); a unanimous group has H = 0 (kept)
    result = run_filter("entropy", make_candidates([["1", "1", "1", "2"], ["4", "4"]]))
    assert result.column("keep").to_pylist() == [False] * 4 + [True, True]
    assert manifest_of(result)["steps"][0]["stats"]["threshold"] == 0.3


def test_entropy_normalised_drops_single_answer_groups():
    groups = [["1", "1", "2"], ["7"], ["3", "3", None]]
    result = run_filter("entropy", make_candidates(groups), normalize=True, threshold=0.95)
    entropy = result.column("answer_entropy").to_pylist()
    assert entropy[0] == pytest.approx(entropy_of(groups[0])[0] / math.log(3))
    assert entropy[3] is None  # n = 1: dropped
    assert entropy[4] == pytest.approx(0.0)
    assert result.column("keep").to_pylist() == [True, True, False, False, True, True, False]


def test_entropy_keep_percent_keeps_lowest_rows_pooled():
    groups = random_groups(5, groups=200)
    result = run_filter("entropy", make_candidates(groups), keep_percent=40)
    entropy = np.array([np.nan if v is None else v for v in result.column("answer_entropy").to_pylist()])
    finite = np.sort(entropy[np.isfinite(entropy)])
    cut = finite[math.ceil(len(finite) * 0.4) - 1]
    assert manifest_of(result)["steps"][0]["stats"]["threshold"] == pytest.approx(cut)
    confident = np.isfinite(entropy) & (entropy <= cut)
    keep = np.array(result.column("keep").to_pylist())
    assert not keep[~confident].any()
    assert keep.sum() > 0
