"""The score cache is keyed by rows: what re-scores, what does not, and that reuse is always right."""

from __future__ import annotations

import importlib.util
import sys
import textwrap

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from helpers_build import SCORE_CALLS, build
from test_build import random_candidates

from curator.build import parse_recipe, run_build
from curator.plugins import registry_for


@pytest.fixture
def candidates(tmp_path):
    path = tmp_path / "candidates.parquet"
    pq.write_table(random_candidates(300), path)
    return path


def scored(result) -> list[int]:
    return [s["rows_scored"] for s in result.manifest["steps"]]


def same_split(a, b) -> bool:
    return all(pq.read_table(a / f"{n}.parquet").equals(pq.read_table(b / f"{n}.parquet"))
               for n in ("curated", "rejected"))


def reached(out, step: str, before: list[str]) -> pa.Table:
    """The rows that reached ``step``: kept, or dropped by it or by a later step."""
    both = pa.concat_tables([pq.read_table(out / "curated.parquet"), pq.read_table(out / "rejected.parquet")])
    dropped_before = pc.is_in(both.column("dropped_by"), pa.array(before, pa.string()))
    return both.filter(pc.invert(pc.fill_null(dropped_before, False)))


def test_changing_batch_rows_rescores_nothing(tmp_path, candidates):
    steps = ["correctness", "majority_vote", {"rationale_length": {"keep_percent": 60}}, {"entropy": {"keep_percent": 70}}]
    first = build(tmp_path, candidates, steps, name="a", batch_rows=64)
    assert scored(first) == [s["rows_in"] for s in first.manifest["steps"]]
    for batch_rows in (100, 16384):
        SCORE_CALLS.clear()
        again = build(tmp_path, candidates, steps, name=f"b{batch_rows}", batch_rows=batch_rows)
        assert scored(again) == [0, 0, 0, 0] and SCORE_CALLS == []
        assert all(s["cached"] for s in again.manifest["steps"])
        assert same_split(first.output_dir, again.output_dir)


def test_an_upstream_selection_change_scores_only_the_rows_that_newly_reach_a_step(tmp_path, candidates):
    def steps(min_share):
        return [{"majority_vote": {"min_share": min_share}}, "rationale_length", {"entropy": {"threshold": 0.5}}]

    middle = build(tmp_path, candidates, steps(0.6), name="middle")
    SCORE_CALLS.clear()
    stricter = build(tmp_path, candidates, steps(0.9), name="stricter")  # fewer rows reach the later steps
    assert scored(stricter) == [0, 0, 0] and SCORE_CALLS == []
    looser = build(tmp_path, candidates, steps(0.3), name="looser")  # more rows reach them
    new_rows = looser.manifest["steps"][1]["rows_in"] - middle.manifest["steps"][1]["rows_in"]
    assert new_rows > 0
    assert scored(looser) == [0, new_rows, new_rows]  # min_share drops whole groups: entropy sees new groups only
    fresh = build(tmp_path, candidates, steps(0.3), name="fresh", cache=str(tmp_path / "fresh"))
    assert same_split(looser.output_dir, fresh.output_dir)


def test_a_group_filter_rescores_exactly_the_groups_whose_reaching_rows_changed(tmp_path, candidates):
    def steps(keep_percent):
        return [{"rationale_length": {"keep_percent": keep_percent}}, "majority_vote"]

    first = build(tmp_path, candidates, steps(80), name="first")
    second = build(tmp_path, candidates, steps(60), name="second")
    before, after = (reached(r.output_dir, "majority_vote", ["rationale_length"]) for r in (first, second))
    rows_of = {}
    for label, table in (("before", before), ("after", after)):
        rows_of[label] = {}
        for row in table.select(["id", "sample"]).to_pylist():
            rows_of[label].setdefault(row["id"], set()).add(row["sample"])
    changed = [i for i, rows in rows_of["after"].items() if rows != rows_of["before"].get(i)]
    assert changed and len(changed) < len(rows_of["after"])
    assert scored(second) == [0, sum(len(rows_of["after"][i]) for i in changed)]
    fresh = build(tmp_path, candidates, steps(60), name="fresh", cache=str(tmp_path / "fresh"))
    assert same_split(second.output_dir, fresh.output_dir)  # reused group scores are the right ones


def test_editing_one_row_rescores_that_row_and_its_group_only(tmp_path):
    table = random_candidates(200)
    pq.write_table(table, tmp_path / "a.parquet")
    rationales = table.column("rationale").to_pylist()
    rationales[10] += " One more step."
    pq.write_table(table.set_column(2, "rationale", pa.array(rationales)), tmp_path / "b.parquet")
    steps = ["rationale_length", "majority_vote"]
    build(tmp_path, tmp_path / "a.parquet", steps, name="a")
    edited = build(tmp_path, tmp_path / "b.parquet", steps, name="b")
    group = pc.equal(table.column("id"), table.column("id")[10]).to_numpy(zero_copy_only=False)
    assert scored(edited) == [1, int(group.sum())]


PLUGIN = '''
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curator import Filter, Selection, hookimpl


@dataclass(kw_only=True)
class Stamp(Filter):
    name = "stamp"
    columns = ("stamp",)
    scope = "row"

    def score(self, batch, context):
        return {{"stamp": pa.array([{value}] * batch.num_rows)}}

    def select(self, batch, stats):
        return Selection(keep=np.ones(batch.num_rows, bool))


@hookimpl
def register_filters(register):
    register(Stamp)
'''


def test_editing_a_plugins_code_rescores(tmp_path, candidates, monkeypatch):
    source = tmp_path / "curator_stamp_plugin.py"

    def load(value: int):
        source.write_text(textwrap.dedent(PLUGIN.format(value=value)))
        spec = importlib.util.spec_from_file_location("curator_stamp_plugin", source)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, "curator_stamp_plugin", module)
        spec.loader.exec_module(module)
        return registry_for([module], entry_points_too=True)

    def run(registry, name):
        recipe = parse_recipe({"input": str(candidates), "task": "gsm8k", "filters": ["stamp"],
                               "output": str(tmp_path / name)}, base_dir=tmp_path)
        result = run_build(recipe, registry=registry, progress=False)
        return result.manifest["steps"][0], set(pq.read_table(result.output_dir / "curated.parquet")["stamp"].to_pylist())

    first, values = run(load(1), "one")
    assert values == {1} and first["cached"] is False
    again, values = run(load(1), "same")
    assert values == {1} and again["cached"] is True
    edited, values = run(load(2), "two")
    assert values == {2} and edited["cached"] is False and edited["rows_scored"] == first["rows_in"]


def test_changing_a_scoring_option_rescores_that_step_only(tmp_path, candidates):
    build(tmp_path, candidates, ["correctness", "entropy", "rationale_length"], name="a")
    normalized = build(tmp_path, candidates, ["correctness", {"entropy": {"normalize": True}}, "rationale_length"],
                       name="b")
    assert scored(normalized) == [0, normalized.manifest["steps"][1]["rows_in"], 0]


def test_adding_an_input_column_rescores(tmp_path, candidates):
    first = build(tmp_path, candidates, ["rationale_length"], name="a")
    table = pq.read_table(candidates)
    pq.write_table(table.append_column("model", pa.array(["m"] * table.num_rows)), tmp_path / "more.parquet")
    more = build(tmp_path, tmp_path / "more.parquet", ["rationale_length"], name="b")
    assert scored(more) == [first.manifest["rows_in"]]  # a filter may read any input column


def test_killed_and_resumed_scores_only_what_was_missing(tmp_path, candidates):
    """Scores written before a crash are kept by row, whichever batch they came from."""
    import helpers_build

    SCORE_CALLS.clear()
    helpers_build.CRASH_AFTER.append(2)
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            build(tmp_path, candidates, ["rationale_length"], batch_rows=64, name="crashed")
    finally:
        helpers_build.CRASH_AFTER.clear()
    done = sum(SCORE_CALLS[:2])
    resumed = build(tmp_path, candidates, ["rationale_length"], batch_rows=100, name="crashed")
    assert scored(resumed) == [resumed.manifest["rows_in"] - done]
    fresh = build(tmp_path, candidates, ["rationale_length"], name="fresh", cache=str(tmp_path / "fresh"))
    assert same_split(resumed.output_dir, fresh.output_dir)
