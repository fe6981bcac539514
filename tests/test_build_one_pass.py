"""The one-pass build: when no fit reads its scores, every batch goes through every step at once.

Its outputs, cache and manifest must be the passes' own; a fit that reads
its scores (even inside ``except Exception``) keeps the passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from helpers_build import build, engine_registry

import curator.build.run as run
from curator import Filter, Selection, hookimpl
from curator.build import parse_recipe, run_build
from curator.build.one_pass import fit_without_scores
from curator.plugins import registry_for
from curator.testing import make_candidates

CHAIN = ["correctness", "majority_vote", {"entropy": {"threshold": 0.7}}]
TIMING = ("score_seconds", "wall_seconds", "fit_seconds", "select_seconds")


def candidates_file(tmp_path, groups: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    answers = [[str(rng.integers(0, 4)) if rng.random() > 0.1 else None for _ in range(rng.integers(1, 9))]
               for _ in range(groups)]
    table = make_candidates(answers, references=[str(rng.integers(0, 4)) for _ in range(groups)])
    path = tmp_path / "candidates.parquet"
    pq.write_table(table, path)
    return path


def comparable(manifest: dict) -> list[dict]:
    """What each step did, without the seconds it took (or the cache folder, which is the same)."""
    return [{k: v for k, v in step.items() if k != "seconds"} for step in manifest["steps"]]


def same_outputs(a, b) -> None:
    for name in ("curated", "rejected"):
        assert pq.read_table(a / f"{name}.parquet").equals(pq.read_table(b / f"{name}.parquet")), name


@pytest.fixture
def passes_only(monkeypatch):
    """Builds in this test run a pass per step, whatever their fits."""
    def use_passes() -> None:
        monkeypatch.setattr(run, "one_pass_stats", lambda steps, executor: None)
    return use_passes


def test_the_one_pass_writes_what_the_passes_write_and_they_share_the_cache(tmp_path, passes_only, monkeypatch):
    data = candidates_file(tmp_path)
    fused = build(tmp_path, data, CHAIN, name="fused", batch_rows=200, cache=str(tmp_path / "c1"))
    assert fused.manifest["executor"] == {"name": "local", "one_pass": True}
    passes_only()
    passes = build(tmp_path, data, CHAIN, name="passes", batch_rows=200, cache=str(tmp_path / "c2"))
    assert passes.manifest["executor"] == {"name": "local"}
    same_outputs(fused.output_dir, passes.output_dir)
    assert comparable(fused.manifest) == [{**s, "cache": s["cache"].replace("c2", "c1")}
                                          for s in comparable(passes.manifest)]
    assert [s["rows_scored"] for s in fused.manifest["steps"]] == [s["rows_in"] for s in fused.manifest["steps"]]
    # the passes find every score the one pass stored, under other batching too
    again = build(tmp_path, data, CHAIN, name="again", batch_rows=77, cache=str(tmp_path / "c1"))
    assert [s["rows_scored"] for s in again.manifest["steps"]] == [0, 0, 0]
    same_outputs(fused.output_dir, again.output_dir)
    # and the one pass finds what the passes stored
    monkeypatch.undo()
    reused = build(tmp_path, data, CHAIN, name="reused", batch_rows=50, cache=str(tmp_path / "c2"))
    assert reused.manifest["executor"]["one_pass"] is True
    assert [s["rows_scored"] for s in reused.manifest["steps"]] == [0, 0, 0]
    same_outputs(fused.output_dir, reused.output_dir)


def test_a_cached_one_pass_scores_nothing_and_reports_the_warnings_of_the_parts_it_used(tmp_path):
    data = candidates_file(tmp_path)
    with pytest.warns(UserWarning, match="rows looked odd"):
        first = build(tmp_path, data, ["correctness", "grumpy"], batch_rows=150)
    assert first.manifest["executor"]["one_pass"] is True
    warned = first.manifest["steps"][1]["warnings"]
    assert len(warned) > 1
    second = build(tmp_path, data, ["correctness", "grumpy"], batch_rows=150, name="second")
    assert [s["rows_scored"] for s in second.manifest["steps"]] == [0, 0]
    assert second.manifest["steps"][1]["cached"] is True and second.manifest["steps"][1]["warnings"] == warned
    same_outputs(first.output_dir, second.output_dir)


def test_a_fit_that_reads_its_scores_keeps_the_passes_even_inside_except_exception():
    @dataclass(kw_only=True)
    class Careful(Filter):
        name = "careful"
        columns = ("x",)

        def score(self, batch, context):
            return {"x": pa.array(np.zeros(batch.num_rows))}

        def fit(self, scores):
            try:
                return {"mean": float(scores.numpy("x").mean())}
            except Exception:  # a fit's own error handling must not turn the probe into statistics
                return {"mean": 0.0}

        def select(self, batch, stats):
            return Selection(keep=np.ones(batch.num_rows, bool))

    @dataclass(kw_only=True)
    class Fixed(Careful):
        def fit(self, scores):
            return {"threshold": 3}

    assert fit_without_scores(Careful()) is None
    assert fit_without_scores(Fixed()) == {"threshold": 3}


@dataclass(kw_only=True)
class LateValues(Filter):
    """Null (of type null) for every row of its first batches, numbers after: a type the files cannot change to."""

    name = "late_values"
    columns = ("late",)
    scope = "row"

    def score(self, batch, context):
        samples = batch.column("sample").to_pylist()
        ids = batch.column("id").to_pylist()
        if all(int(i[1:]) < 100 for i in ids):  # make_candidates numbers its questions q0, q1, ...
            return {"late": pa.array([None] * batch.num_rows)}
        return {"late": pa.array([float(s) for s in samples])}

    def select(self, batch, stats):
        return Selection(keep=pc.fill_null(pc.not_equal(batch.column("late"), 1.0), True))


class LatePlugin:
    @staticmethod
    @hookimpl
    def register_filters(register):
        register(LateValues)


def test_a_column_typed_null_at_first_sends_the_build_back_to_the_passes_with_the_right_values(tmp_path,
                                                                                              passes_only):
    data = candidates_file(tmp_path)
    registry = registry_for([LatePlugin], entry_points_too=True)

    def late_build(name: str):
        recipe = parse_recipe({"input": str(data), "task": "gsm8k", "filters": ["correctness", "late_values"],
                               "output": str(tmp_path / name), "batch_rows": 100, "cache": str(tmp_path / name)},
                              base_dir=tmp_path)
        return run_build(recipe, registry=registry, progress=False)

    fell_back = late_build("fell-back")
    assert fell_back.manifest["executor"] == {"name": "local"}  # it began in one pass, and finished in passes
    late = pq.read_table(fell_back.output_dir / "rejected.parquet").column("late")
    assert late.type == pa.float64() and pc.sum(pc.equal(late, 1.0)).as_py() > 0
    assert not list(fell_back.output_dir.glob(".*.tmp"))
    passes_only()
    same_outputs(fell_back.output_dir, late_build("passes").output_dir)


def test_a_one_pass_killed_midway_resumes_scoring_only_what_it_had_not(tmp_path, monkeypatch):
    import helpers_build

    data = candidates_file(tmp_path, groups=600)
    whole = build(tmp_path, data, ["correctness", "half_weight"], name="whole", batch_rows=100,
                  cache=str(tmp_path / "whole-cache"))
    assert whole.manifest["executor"]["one_pass"] is True
    calls: list[int] = []
    original = helpers_build.HalfWeight.score

    def crashing(self, batch, context):
        calls.append(batch.num_rows)
        if len(calls) > 4:
            raise RuntimeError("simulated crash")
        return original(self, batch, context)

    monkeypatch.setattr(helpers_build.HalfWeight, "score", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(tmp_path, data, ["correctness", "half_weight"], name="killed", batch_rows=100)
    assert not (tmp_path / "killed" / "manifest.json").exists()
    monkeypatch.setattr(helpers_build.HalfWeight, "score", original)
    resumed = build(tmp_path, data, ["correctness", "half_weight"], name="killed", batch_rows=100)
    step = resumed.manifest["steps"][1]
    assert 0 < step["rows_scored"] < step["rows_in"]  # what the killed run stored was not scored again
    same_outputs(whole.output_dir, resumed.output_dir)


def test_the_engine_registry_builds_in_one_pass_only_without_a_model_or_a_fit_reading_scores(tmp_path):
    from curator.build.one_pass import one_pass_stats
    from curator.build.planning import plan_steps

    def stats_of(filters, executor="local"):
        recipe = parse_recipe({"input": "x.parquet", "task": "gsm8k", "filters": filters, "output": "o"},
                              base_dir=tmp_path)
        return one_pass_stats(plan_steps(recipe, engine_registry()), executor)

    assert stats_of(CHAIN) is not None
    assert stats_of(CHAIN, executor="ray") is None
    assert stats_of([*CHAIN, {"rationale_length": {"keep_percent": 50}}]) is None  # a percentile cut
    assert stats_of([{"entropy": {"keep_percent": 50}}]) is None


def test_a_one_pass_build_keeps_no_working_copy_and_the_passes_keep_theirs(tmp_path):
    data = candidates_file(tmp_path)
    fused = build(tmp_path, data, CHAIN, name="fused", cache=str(tmp_path / "c1"))
    assert fused.manifest["executor"]["one_pass"] is True
    kept = list((tmp_path / "c1").rglob("*.arrow"))
    assert kept and all("scores" in p.parts for p in kept)  # score parts only
    cut = build(tmp_path, data, ["correctness", {"entropy": {"keep_percent": 50}}], name="cut",
                cache=str(tmp_path / "c1"))
    assert cut.manifest["executor"] == {"name": "local"}
    copies = list((tmp_path / "c1" / "prepared").glob("*.arrow"))
    assert copies  # the passes read it once per step
    # a one-pass build reads a copy another build left, rather than the input
    again = build(tmp_path, data, CHAIN, name="again", cache=str(tmp_path / "c1"))
    assert "read copy" in again.manifest["phases"]["wall"] and "answer" not in again.manifest["phases"]["cpu"]
    assert "read copy" not in fused.manifest["phases"]["wall"] and "answer" in fused.manifest["phases"]["cpu"]
    same_outputs(fused.output_dir, again.output_dir)


def test_the_one_pass_bar_counts_the_input_rows_a_parquet_footer_gives(tmp_path, monkeypatch):
    import contextlib

    import curator.build.one_pass as one_pass

    bars: list[tuple[int | None, str, list[int]]] = []

    @contextlib.contextmanager
    def recording(total, label, **options):
        seen: list[int] = []
        bars.append((total, label, seen))

        class Bar:
            def update(self, n):
                seen.append(n)

        yield Bar()

    monkeypatch.setattr(one_pass, "progress_bar", recording)
    data = candidates_file(tmp_path)
    recipe = parse_recipe({"input": str(data), "task": "gsm8k", "filters": CHAIN, "output": str(tmp_path / "o"),
                           "cache": str(tmp_path / "c"), "batch_rows": 100}, base_dir=tmp_path)
    result = run_build(recipe, registry=engine_registry(), progress=True)
    rows = pq.read_metadata(data).num_rows
    assert bars == [(rows, "correctness → majority_vote → entropy", bars[0][2])]
    assert sum(bars[0][2]) == rows == result.manifest["rows_in"] and len(bars[0][2]) > 1
