"""A filter is handed only the input columns it reads (``Filter.reads``), in every mode, and the outputs stay put."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curator import Filter, Selection, hookimpl
from curator.build import parse_recipe, run_build
from curator.plugins import registry_for
from curator.testing import make_candidates

SEEN: dict[str, list[tuple[str, ...]]] = {}
_LOCK = threading.Lock()


def _saw(step: str, batch: pa.RecordBatch) -> None:
    with _LOCK:
        SEEN.setdefault(step, []).append(tuple(batch.schema.names))


@dataclass(kw_only=True)
class AnswerLength(Filter):
    """Reads the answer only; keeps rows whose answer has at most ``longest`` characters."""

    name = "answer_length"
    columns = ("answer_length",)
    scope = "row"
    longest: int = 1
    read_all: bool = False
    fit_reads_scores: bool = False

    def reads(self, batch):
        return None if self.read_all else ("answer",)

    def score(self, batch, context):
        _saw(f"score {self.read_all}", batch)
        return {"answer_length": pc.utf8_length(pc.fill_null(batch.column("answer"), ""))}

    def fit(self, scores):
        return {"rows": scores.num_rows} if self.fit_reads_scores else {}

    def select(self, batch, stats):
        _saw(f"select {self.read_all}", batch)
        return Selection(keep=pc.less_equal(batch.column("answer_length"), self.longest))


@dataclass(kw_only=True)
class Peeker(Filter):
    """Declares the answer only, then reads the rationale too (in ``score`` or in ``select``)."""

    name = "peeker"
    columns = ("peeked",)
    scope = "row"
    in_select: bool = False

    def reads(self, batch):
        return ("answer",)

    def score(self, batch, context):
        if not self.in_select:
            batch.column("rationale")
        return {"peeked": pa.array([True] * batch.num_rows)}

    def select(self, batch, stats):
        if self.in_select:
            batch.column("rationale")
        return Selection(keep=batch.column("peeked"))


class _Plugin:
    @hookimpl
    def register_filters(register):
        register(AnswerLength)
        register(Peeker)


def _data(tmp_path, nulls: bool = False):
    rng = np.random.default_rng(3)
    answers = [[str(rng.integers(0, 30)) if rng.random() > 0.1 else None for _ in range(rng.integers(1, 8))]
               for _ in range(300)]
    table = make_candidates(answers, references=[str(rng.integers(0, 30)) for _ in range(300)])
    if nulls:  # some rows without a sample number: entropy then tells them apart by their rationale
        sample = table.column("sample").to_numpy()
        table = table.set_column(table.schema.get_field_index("sample"), "sample",
                                 pa.array(sample, mask=rng.random(len(sample)) < 0.2))
    path = tmp_path / f"candidates{'-nulls' if nulls else ''}.parquet"
    pq.write_table(table, path)
    return path


def _build(tmp_path, data, filters, name):
    recipe = parse_recipe({"input": str(data), "task": "gsm8k", "filters": filters, "output": str(tmp_path / name),
                           "cache": str(tmp_path / f"cache-{name}"), "batch_rows": 120}, base_dir=tmp_path)
    return run_build(recipe, registry=registry_for([_Plugin], entry_points_too=True), progress=False)


@pytest.mark.parametrize("fit_reads_scores", [False, True], ids=["one pass", "passes"])
def test_a_later_step_is_handed_only_the_columns_its_filter_reads(tmp_path, fit_reads_scores):
    SEEN.clear()
    data = _data(tmp_path)
    steps = ["correctness", {"answer_length": {"fit_reads_scores": fit_reads_scores}},
             {"answer_length": {"read_all": True, "name": "everything"}}]
    result = _build(tmp_path, data, steps, "out")
    assert result.manifest["executor"].get("one_pass", False) is not fit_reads_scores
    assert set(SEEN["score False"]) == {("answer",)}
    assert set(SEEN["select False"]) == {("answer", "answer_length")}
    every = tuple(pq.read_schema(data).names)
    assert set(SEEN["score True"]) == {every}  # no declaration: the whole row, as before
    assert set(SEEN["select True"]) == {(*every, "answer_length")}


def test_the_builtins_declarations_change_no_output(tmp_path, monkeypatch):
    """correctness, majority_vote and entropy (with and without a marker, with rows lacking a sample) write the
    same split whether the build honours what they declare they read or hands them every column."""
    chains = [["correctness", "majority_vote", {"entropy": {"threshold": 0.7}}],
              [{"majority_vote": {"min_share": 0.5}}, {"entropy": {"threshold": 0.9, "require_marker": "answer is"}}],
              ["correctness", {"entropy": {"keep_percent": 60}}]]  # a percentile: the passes, and tie keys
    for number, chain in enumerate(chains):
        for nulls in (False, True):
            data = _data(tmp_path, nulls)
            declared = _build(tmp_path, data, chain, f"declared-{number}-{nulls}")
            with monkeypatch.context() as patch:
                patch.setattr("curator.filter.columns_read", lambda filter, batch: None)  # what every mode asks
                whole = _build(tmp_path, data, chain, f"whole-{number}-{nulls}")
            for name in ("curated", "rejected"):
                assert pq.read_table(declared.output_dir / f"{name}.parquet").equals(
                    pq.read_table(whole.output_dir / f"{name}.parquet")), (chain, nulls, name)
            assert declared.manifest["rows_out"] > 0


def test_entropy_reads_the_rationale_only_where_a_marker_or_a_missing_sample_needs_it():
    from curator_plugins.entropy import Entropy

    full = pa.record_batch({"id": ["a"], "rationale": ["x"], "answer": ["1"], "sample": pa.array([0])})
    missing = pa.record_batch({"id": ["a"], "rationale": ["x"], "answer": ["1"], "sample": pa.array([None], pa.int64())})
    without = pa.record_batch({"id": ["a"], "rationale": ["x"], "answer": ["1"]})
    plain = Entropy.from_options({"threshold": 0.5}, step="entropy")
    marked = Entropy.from_options({"threshold": 0.5, "require_marker": "####"}, step="entropy")
    assert "rationale" not in plain.reads(full)
    assert "rationale" in plain.reads(missing) and "rationale" in plain.reads(without)
    assert "rationale" in marked.reads(full)


@pytest.mark.parametrize("in_select", [False, True], ids=["score", "select"])
def test_a_column_read_but_not_declared_is_named_in_one_line(tmp_path, in_select):
    from curator import CuratorError

    with pytest.raises(CuratorError) as caught:
        _build(tmp_path, _data(tmp_path), [{"peeker": {"in_select": in_select}}], "out")
    said = str(caught.value)
    assert said.startswith("filter 'peeker' (") and ("select" if in_select else "score") in said
    assert 'Field "rationale" does not exist' in said and "reads()" in said and "handed: answer" in said
