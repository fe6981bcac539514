"""The percentile cut every percentile filter shares: exact counts at ties, seeded and batch-proof, and IWSI's cuts.

The released rules are transcribed from IWSI's ``src/data/filter_data.py``
(modes ``K-Mixed``, ``RM`` and ``Self``) as plain Python over a pooled list,
and the filters are run through the real build on scores a test subclass
reads from an input column, so selection is checked without a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from curator import TIE_KEY, keep_at_cut, percentile_cut, row_hashes, seeded_keys
from curator.filter import kept_count
from curator.testing import make_candidates, manifest_of, run_filter
from curator_plugins.ds_weight import DSWeight
from curator_plugins.reward_model import RewardModel
from curator_plugins.self_eval import SelfEval


def coarse_table(values: list[float], group: int = 5):
    """One row per value, in groups of ``group``, with the value as a ``given`` column."""
    groups = [["1"] * min(group, len(values) - start) for start in range(0, len(values), group)]
    return make_candidates(groups, given=values)


def given_scores(cls, column: str):
    """``cls`` with its scores read from the input column ``given`` instead of a model."""

    @dataclass(kw_only=True)
    class Given(cls):
        def score(self, batch, context):
            return {column: batch.column("given"), TIE_KEY: row_hashes(batch)}

    return Given


GivenSelfEval = given_scores(SelfEval, "self_eval")
GivenReward = given_scores(RewardModel, "reward")


@dataclass(kw_only=True)
class GivenDSWeight(DSWeight):
    def score(self, batch, context):
        return {"ds_loss": batch.column("given"), "ds_weight": batch.column("given"), TIE_KEY: row_hashes(batch)}


def integer_ratings(n: int = 300, seed: int = 0) -> list[float]:
    return np.random.default_rng(seed).integers(0, 11, n).astype(float).tolist()


def kept(result) -> np.ndarray:
    return np.array(result.column("keep").to_pylist())


# -- the shared rule ----------------------------------------------------------------------------


def test_kept_count_is_the_floor_of_the_percentage_the_user_wrote():
    assert kept_count(300, 80) == 240
    assert kept_count(10, 70) == 7  # 10 * 0.7 is 7.000000000000001 in floats
    assert kept_count(300, 33.3) == 99
    assert kept_count(7, 100) == 7 and kept_count(7, 0) == 0 and kept_count(0, 50) == 0


@pytest.mark.parametrize("keep", ["lowest", "highest"])
@pytest.mark.parametrize("percent", [0, 1, 33.3, 79, 80, 99.9, 100])
def test_exact_cut_keeps_floor_n_k_rows_and_only_breaks_ties(keep, percent):
    rng = np.random.default_rng(int(percent * 10))
    values = rng.integers(0, 6, 500).astype(float)
    values[rng.random(500) < 0.05] = np.nan
    keys = seeded_keys(rng.integers(0, 2**63, 500, dtype=np.uint64), seed=3)
    stats = percentile_cut(values, percent, keep=keep, tie_keys=keys)
    chosen = keep_at_cut(values, stats, keys)
    finite = np.isfinite(values)
    assert chosen.sum() == stats["kept"] == kept_count(int(finite.sum()), percent)
    assert not chosen[~finite].any()
    oriented = values if keep == "lowest" else -values
    if chosen.any() and (~chosen & finite).any():
        assert oriented[chosen].max() <= oriented[~chosen & finite].min()  # nothing worse kept over better
    if stats["cut"] is not None:
        assert stats["tied_at_cut"] == int((values == stats["cut"]).sum())


def test_300_integer_ratings_at_80_percent_keep_240_in_any_batching():
    values = np.array(integer_ratings())
    keys = seeded_keys(np.arange(300, dtype=np.uint64) * np.uint64(7919), seed=0)
    stats = percentile_cut(values, 80, keep="highest", tie_keys=keys)
    whole = keep_at_cut(values, stats, keys)
    assert whole.sum() == 240 and stats["at_cut"] == "by_key" and 0 < stats["tied_kept"] < stats["tied_at_cut"]
    for size in (1, 7, 64, 299):
        parts = [keep_at_cut(values[i:i + size], stats, keys[i:i + size]) for i in range(0, 300, size)]
        assert np.array_equal(np.concatenate(parts), whole)


def test_the_seed_changes_which_tied_rows_are_kept_and_only_the_seed():
    values = np.zeros(100)
    hashes = np.arange(100, dtype=np.uint64)
    picks = []
    for seed in (0, 0, 1):
        keys = seeded_keys(hashes, seed)
        picks.append(keep_at_cut(values, percentile_cut(values, 30, keep="lowest", tie_keys=keys), keys))
    assert all(p.sum() == 30 for p in picks)
    assert np.array_equal(picks[0], picks[1]) and not np.array_equal(picks[0], picks[2])


def iwsi_k_mixed(values: list[float], k: float) -> list[bool]:
    """IWSI's DS-weight cut: sort ascending, threshold at index int(N*k), keep strictly under it."""
    pool = sorted(values)
    threshold = pool[int(len(pool) * k)]
    return [v < threshold for v in values]


def iwsi_rm(values: list[float], k: float) -> list[bool]:
    """IWSI's RM cut: zero rewards leave the pool; sort descending, keep at least the value at int(N*k)."""
    pool = sorted((v for v in values if v != 0), reverse=True)
    threshold = pool[int(len(pool) * k)]
    return [v != 0 and not v < threshold for v in values]


def iwsi_self(values: list[float], k: float) -> list[bool]:
    """IWSI's Self cut: as RM when the threshold rating is above 0, else the first int(N*k) of a stable sort."""
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=True)
    count = int(len(values) * k)
    threshold = values[order[count]]
    if threshold > 0:
        return [not v < threshold for v in values]
    chosen = set(order[:count])
    return [i in chosen for i in range(len(values))]


def test_iwsi_strict_and_inclusive_cuts_match_the_released_code():
    rng = np.random.default_rng(4)
    for _ in range(20):
        values = rng.integers(-3, 4, rng.integers(5, 60)).astype(float)
        k = float(rng.choice([0.3, 0.5, 0.79, 0.8]))
        strict = percentile_cut(values, k * 100, keep="lowest", rule="iwsi_strict")
        assert keep_at_cut(values, strict).tolist() == iwsi_k_mixed(values.tolist(), k)
        nonzero = np.where(values == 0, np.nan, values)
        inclusive = percentile_cut(nonzero, k * 100, keep="highest", rule="iwsi_inclusive")
        assert keep_at_cut(nonzero, inclusive).tolist() == iwsi_rm(values.tolist(), k)
    for rule in ("iwsi_strict", "iwsi_inclusive"):  # where the released index would run past the end
        assert keep_at_cut(values, percentile_cut(values, 100, keep="lowest", rule=rule)).all()


# -- the filters, through the build ----------------------------------------------------------------


@pytest.mark.parametrize("batch_rows", [16384, 23, 64])
def test_self_eval_on_integer_ratings_keeps_exactly_keep_percent(batch_rows):
    values = integer_ratings()
    result = run_filter(GivenSelfEval, coarse_table(values), model="unused", keep_percent=80, batch_rows=batch_rows)
    keep = kept(result)
    assert keep.sum() == 240
    stats = manifest_of(result)["steps"][0]["stats"]
    assert stats["rule"] == "exact" and stats["kept"] == 240
    assert stats["tied_at_cut"] == values.count(stats["cut"]) and 0 < stats["tied_kept"] < stats["tied_at_cut"]
    ratings = np.array(values)
    assert ratings[keep].min() == stats["cut"] and (ratings[~keep] <= stats["cut"]).all()
    # the same rows whatever the batching
    reference = kept(run_filter(GivenSelfEval, coarse_table(values), model="unused", keep_percent=80))
    assert np.array_equal(keep, reference)


def test_self_eval_iwsi_cut_is_the_released_rule():
    values = integer_ratings(seed=2)
    result = run_filter(GivenSelfEval, coarse_table(values), model="unused", keep_percent=80, cut_rule="iwsi")
    assert kept(result).tolist() == iwsi_self(values, 0.8)  # the cut rating is above 0: ties kept
    assert kept(result).sum() > 240
    # all zero ratings (unparsable verdicts): the released code keeps exactly int(N*k) rows
    zeros = [0.0] * 300
    result = run_filter(GivenSelfEval, coarse_table(zeros), model="unused", keep_percent=80, cut_rule="iwsi")
    assert kept(result).sum() == sum(iwsi_self(zeros, 0.8)) == 240


def test_ds_weight_iwsi_cut_drops_the_ties_and_exact_keeps_the_count():
    values = np.random.default_rng(3).choice([1.0, 1.25, 2.0, 5.0], 300).tolist()
    iwsi = run_filter(GivenDSWeight, coarse_table(values), model="unused", valid="unused", keep_percent=79,
                      cut_rule="iwsi")
    assert kept(iwsi).tolist() == iwsi_k_mixed(values, 0.79)
    exact = run_filter(GivenDSWeight, coarse_table(values), model="unused", valid="unused", keep_percent=79, seed=5)
    assert kept(exact).sum() == kept_count(300, 79) == 237
    weights = np.array(values)
    assert weights[kept(exact)].max() <= weights[~kept(exact)].min()


def test_ds_weight_zero_loss_rows_are_dropped_and_not_counted():
    weights = [None if i % 10 == 0 else 1.0 + i / 100 for i in range(100)]  # ds_weight is null where l_i = 0
    table = coarse_table(weights)
    result = run_filter(GivenDSWeight, table, model="unused", valid="unused", keep_percent=50)
    keep = kept(result)
    assert keep.sum() == 45  # floor(90 * 0.5): the ten zero-loss rows are outside the pool
    assert not keep[::10].any()


def test_reward_model_iwsi_cut_leaves_out_zero_rewards_as_the_released_code():
    values = np.random.default_rng(6).choice([-1.5, 0.0, 0.5, 2.0], 200).tolist()
    result = run_filter(GivenReward, coarse_table(values), model="unused", keep_percent=60, cut_rule="iwsi")
    assert kept(result).tolist() == iwsi_rm(values, 0.6)
    exact = run_filter(GivenReward, coarse_table(values), model="unused", keep_percent=60)
    assert kept(exact).sum() == 120
    fixed = run_filter(GivenReward, coarse_table(values), model="unused", min_reward=0.5)
    assert kept(fixed).tolist() == [v >= 0.5 for v in values]


def test_cut_options_are_selection_options():
    for cls in (SelfEval, RewardModel):
        options = cls(model="m").score_options()
        assert "cut_rule" not in options and "seed" not in options and "keep_percent" not in options
    assert "seed" not in DSWeight(model="m", valid="v").score_options()


def test_row_hashes_depend_on_the_row_alone():
    import pyarrow as pa

    table = make_candidates([["1", "2", "3"], ["4", "5"]])
    whole = row_hashes(table.to_batches()[0]).to_pylist()
    assert len(set(whole)) == 5
    tail = row_hashes(table.slice(2).to_batches()[0]).to_pylist()
    assert tail == whole[2:]  # the same row hashes the same in any batch
    # without a sample the rationale identifies the row
    no_sample = table.drop_columns(["sample"])
    plain = row_hashes(no_sample.to_batches()[0]).to_pylist()
    assert len(set(plain)) == 5
    changed = no_sample.set_column(2, "rationale", pa.array(["other text"] + no_sample["rationale"].to_pylist()[1:]))
    assert row_hashes(changed.to_batches()[0]).to_pylist()[1:] == plain[1:]
    assert row_hashes(changed.to_batches()[0]).to_pylist()[0] != plain[0]
