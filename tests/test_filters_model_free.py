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


def test_entropy_keep_percent_passes_exactly_the_lowest_rows_question_by_question():
    # unanimous groups of 1-6 rows: every row agrees and has H = 0, so all 300 tie at the cut
    sizes = np.random.default_rng(8).integers(1, 7, 200)
    sizes = sizes[np.cumsum(sizes) <= 300]
    sizes = np.append(sizes, 300 - sizes.sum())
    groups = [[str(i % 5)] * int(size) for i, size in enumerate(sizes)]
    for batch_rows in (16384, 40):
        result = run_filter("entropy", make_candidates(groups), keep_percent=80, seed=1, batch_rows=batch_rows)
        keep = np.array(result.column("keep").to_pylist())
        assert keep.sum() == 240
        stats = manifest_of(result)["steps"][0]["stats"]
        assert stats["tied_at_cut"] == 300 and stats["kept"] == 240
        split = [g for g, part in enumerate(np.split(keep, np.cumsum(sizes)[:-1])) if 0 < part.sum() < len(part)]
        assert len(split) <= 1  # tied questions are taken whole, but for the one at the boundary
    groups = random_groups(5, groups=200)
    result = run_filter("entropy", make_candidates(groups), keep_percent=40)
    entropy = np.array([np.nan if v is None else v for v in result.column("answer_entropy").to_pylist()])
    cut = manifest_of(result)["steps"][0]["stats"]["threshold"]
    assert cut == np.sort(entropy[np.isfinite(entropy)])[math.floor(np.isfinite(entropy).sum() * 0.4) - 1]
    keep = np.array(result.column("keep").to_pylist())
    assert not keep[~(entropy <= cut)].any() and keep.sum() > 0


def mot_entropy_filter(rationales: list[str], answers: list[str | None], threshold: float = 0.3) -> list[bool]:
    """MoT's extract_demos_from_inference_result.py (entropy, --filter_no_trigger 1), on parsable answers."""
    marked = [i for i, r in enumerate(rationales) if "The answer is " in r and answers[i] is not None]
    counts = Counter(answers[i] for i in marked)
    if not counts:
        return [False] * len(answers)
    ranked = sorted(counts.items(), key=lambda item: item[-1], reverse=True)
    total = sum(counts.values())
    h = -sum(c / total * math.log(c / total) for c in counts.values())
    keep = [False] * len(answers)
    if h < threshold:
        keep[next(i for i in marked if answers[i] == ranked[0][0])] = True
    return keep


def iwsi_entropy_filter(answers: list[str | None], threshold: float = 1.0) -> list[bool]:
    """IWSI's filter_data.py, mode Entropy: H / ln n <= threshold keeps the first-counted majority answer."""
    stat: dict[str, list[int]] = {}
    for i, a in enumerate(answers):
        if a is not None:
            stat.setdefault(a, []).append(i)
    if not stat or math.log(sum(len(v) for v in stat.values())) == 0:
        return [False] * len(answers)
    total = sum(len(v) for v in stat.values())
    h = -sum(len(v) / total * math.log(len(v) / total) for v in stat.values())
    if h / math.log(total) > threshold:
        return [False] * len(answers)
    best = max(stat, key=lambda a: len(stat[a]))  # first answer with the top count
    return [i in stat[best] for i in range(len(answers))]


@pytest.mark.parametrize("seed", [0, 7])
def test_entropy_rule_mot_is_the_released_mot_filter(seed):
    rng = np.random.default_rng(seed)
    groups = random_groups(seed)
    rationales = [[f"So it is {a}." if rng.random() < 0.2 else f"Work. The answer is {a}." for a in g] for g in groups]
    rationales = [[r if a is not None else "No idea." for r, a in zip(rs, g)] for rs, g in zip(rationales, groups)]
    result = run_filter("entropy", make_candidates(groups, rationales=rationales), rule="mot")
    expected = [k for g, r in zip(groups, rationales) for k in mot_entropy_filter(r, g)]
    assert result.column("keep").to_pylist() == expected
    assert sum(expected) > 5
    stats = manifest_of(result)["steps"][0]["stats"]
    assert stats["rule"] == "mot" and stats["comparison"] == "H < threshold" and stats["one_per_question"]


@pytest.mark.parametrize("threshold", [None, 0.5])
def test_entropy_rule_iwsi_is_the_released_iwsi_filter(threshold):
    groups = random_groups(2) + [["1", "2"], ["3", "3", "4", "4"]]  # H / ln n = 1 exactly: kept at 1.0 (<=)
    options = {"rule": "iwsi"} if threshold is None else {"normalize": True, "threshold": threshold}
    result = run_filter("entropy", make_candidates(groups), **options)
    expected = [k for g in groups for k in iwsi_entropy_filter(g, threshold or 1.0)]
    assert result.column("keep").to_pylist() == expected
    assert manifest_of(result)["steps"][0]["stats"]["comparison"] == "H <= threshold"


def test_entropy_options_override_the_rule_and_are_range_checked():
    from curator import CuratorError
    from curator_plugins.entropy import Entropy

    mot = Entropy.from_options({"rule": "mot", "require_marker": "", "one_per_question": False}, step="e")
    assert (mot.threshold, mot.inclusive, mot.require_marker, mot.one_per_question) == (0.3, False, "", False)
    assert Entropy().options()["rule"] == "project" and Entropy(normalize=True).rule == "iwsi"
    with pytest.raises(CuratorError, match="'threshold' must be 0 or more, got -1"):
        Entropy.from_options({"threshold": -1}, step="e")
    with pytest.raises(CuratorError, match=r"between 0 and 1 \(the normalised entropy"):
        Entropy.from_options({"normalize": True, "threshold": 1.5}, step="e")
    with pytest.raises(CuratorError, match="not both"):
        Entropy.from_options({"threshold": 0.2, "keep_percent": 50}, step="e")


def test_majority_vote_min_share_is_a_fraction():
    from curator import CuratorError
    from curator_plugins.majority_vote import MajorityVote

    with pytest.raises(CuratorError, match="option 'min_share' must be between 0 and 1, got 2.0"):
        MajorityVote.from_options({"min_share": 2}, step="vote")


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_weighted_vote_refuses_non_finite_logprobs_naming_the_row(bad):
    from curator import CuratorError

    table = make_candidates([["1", "1"], ["2", "3", "3", "3"]], logprob=[-1.0, -1.0, bad, -1.0, -1.0, -1.0],
                            n_tokens=[4] * 6)
    with pytest.raises(CuratorError, match=r"row with id 'q1' sample 0 has logprob (inf|-inf|nan)"):
        run_filter("majority_vote", table, weight_by="logprob")


def test_weighted_vote_gives_a_null_logprob_no_weight():
    table = make_candidates([["2", "3", "3"]], logprob=[-1.0, None, None], n_tokens=[4, 4, 4])
    result = run_filter("majority_vote", table, weight_by="logprob")
    assert result.column("vote_answer").to_pylist() == ["2"] * 3
    assert result.column("vote_share").to_pylist()[0] == pytest.approx(1.0)



@pytest.mark.parametrize(("ids", "samples", "repeats"), [
    ("aaabb", [0, 1, 2, 0, 1], 0), ("aaabb", [2, 0, 1, 1, 0], 0), ("aaabb", [0, 1, 0, 5, 6], 2),
    ("aaabb", [3, 3, 1, 0, 2], 2), ("aabcd", [0, 1, 2, 2, 2], 0),
])
def test_repeated_samples_are_found_in_any_order_within_their_question(ids, samples, repeats):
    import warnings

    import pyarrow as pa

    from curator.groups import warn_repeated_samples

    batch = pa.record_batch({"id": list(ids), "sample": pa.array(samples, pa.int32())})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_repeated_samples(batch)
    assert [str(w.message).split()[0] for w in caught] == ([str(repeats)] if repeats else [])
