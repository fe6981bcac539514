"""The build: the split, the manifest, step order, caching and resuming."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import helpers_build
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from helpers_build import CRASH_AFTER, SCORE_CALLS, build, read_split

from curator import CuratorError
from curator.testing import make_candidates

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def random_candidates(groups: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    answers = [[str(rng.integers(0, 4)) if rng.random() > 0.1 else None for _ in range(rng.integers(1, 9))]
               for _ in range(groups)]
    references = [str(rng.integers(0, 4)) for _ in range(groups)]
    table = make_candidates(answers, references=references)
    padding = [" step" * int(n) for n in rng.integers(0, 40, table.num_rows)]
    return table.set_column(2, "rationale", pc.binary_join_element_wise(table.column("rationale"), pa.array(padding), ""))


@pytest.fixture
def candidates(tmp_path) -> Path:
    path = tmp_path / "candidates.parquet"
    pq.write_table(random_candidates(300), path)
    return path


def test_every_row_lands_in_exactly_one_output_with_all_columns(tmp_path, candidates):
    result = build(tmp_path, candidates, ["correctness", "majority_vote", {"rationale_length": {"keep_percent": 50}}],
                   batch_rows=100)
    curated, rejected, manifest = read_split(result.output_dir)
    source = pq.read_table(candidates)
    assert curated.num_rows + rejected.num_rows == source.num_rows
    both = pa.concat_tables([curated, rejected])
    keys = set(zip(both.column("id").to_pylist(), both.column("sample").to_pylist()))
    assert len(keys) == source.num_rows
    for column in [*source.schema.names, "correct", "vote_answer", "vote_share", "length", "keep", "weight", "dropped_by"]:
        assert column in curated.schema.names and column in rejected.schema.names
    assert pc.all(curated.column("keep")).as_py() and not pc.any(rejected.column("keep")).as_py()
    assert curated.column("dropped_by").null_count == curated.num_rows
    assert rejected.column("dropped_by").null_count == 0
    counts = rejected.column("dropped_by").value_counts().to_pylist()
    by_step = {c["values"]: c["counts"] for c in counts}
    steps = {s["step"]: s for s in manifest["steps"]}
    assert steps["correctness"]["rows_in"] == source.num_rows
    for name, step in steps.items():
        assert step["rows_dropped"] == by_step.get(name, 0)
        assert step["rows_kept"] == step["rows_in"] - step["rows_dropped"]
    assert steps["majority_vote"]["rows_in"] == steps["correctness"]["rows_kept"]
    assert manifest["rows_out"] == curated.num_rows and manifest["outputs"]["curated.parquet"] == curated.num_rows
    assert manifest["versions"]["pyarrow"] == pa.__version__
    assert manifest["recipe"]["filters"][2] == {"rationale_length": {"keep_percent": 50}}
    # a step's score is present exactly on the rows that reached it
    reached_length = both.filter(pc.or_kleene(both.column("keep"), pc.equal(both.column("dropped_by"), "rationale_length")))
    assert both.column("length").null_count == both.num_rows - reached_length.num_rows


def test_percentile_applies_to_rows_that_reach_the_step(tmp_path, candidates):
    result = build(tmp_path, candidates, ["correctness", {"rationale_length": {"keep_percent": 30}}])
    curated, rejected, manifest = read_split(result.output_dir)
    both = pa.concat_tables([curated, rejected])
    reached = both.filter(pc.fill_null(both.column("correct"), False))
    lengths = np.sort(reached.column("length").to_numpy())
    cut = lengths[int(np.ceil(len(lengths) * 0.30)) - 1]
    assert manifest["steps"][1]["stats"]["cut"] == cut
    assert curated.num_rows == int((lengths <= cut).sum())
    assert curated.num_rows >= np.ceil(len(lengths) * 0.30)


def test_keep_percent_100_keeps_everything(tmp_path, candidates):
    result = build(tmp_path, candidates, [{"rationale_length": {"keep_percent": 100}}])
    curated, rejected, _ = read_split(result.output_dir)
    assert rejected.num_rows == 0 and curated.num_rows == pq.read_metadata(candidates).num_rows


def test_weights_multiply_and_land_in_weight_column(tmp_path, candidates):
    result = build(tmp_path, candidates, ["half_weight", {"half_weight": {"name": "again"}}])
    curated, _, manifest = read_split(result.output_dir)
    odd = pc.equal(pc.bit_wise_and(curated.column("sample"), 1), 1).to_numpy(zero_copy_only=False)
    assert np.allclose(curated.column("weight").to_numpy(), np.where(odd, 0.25, 1.0))
    assert curated.schema.field("weight").type == pa.float32()
    assert "odd" in curated.schema.names and "odd_again" in curated.schema.names
    assert [s["step"] for s in manifest["steps"]] == ["half_weight", "again"]


def test_named_steps_use_their_name_in_columns_and_dropped_by(tmp_path, candidates):
    result = build(tmp_path, candidates, [
        {"rationale_length": {"keep_percent": 90, "name": "loose"}},
        {"rationale_length": {"keep_percent": 50, "name": "tight"}},
    ])
    curated, rejected, _ = read_split(result.output_dir)
    assert {"length_loose", "length_tight"} <= set(curated.schema.names)
    assert set(rejected.column("dropped_by").unique().to_pylist()) == {"loose", "tight"}


def test_a_repeated_filter_without_names_is_an_error(tmp_path, candidates):
    with pytest.raises(CuratorError, match="step name 'rationale_length' is used twice"):
        build(tmp_path, candidates, ["rationale_length", "rationale_length"])


def test_unknown_filter_and_option_name_the_step(tmp_path, candidates):
    with pytest.raises(CuratorError, match="unknown filter 'nope'"):
        build(tmp_path, candidates, ["nope"])
    with pytest.raises(CuratorError, match="filter step 'entropy': unknown option 'treshold'"):
        build(tmp_path, candidates, [{"entropy": {"treshold": 0.3}}])
    with pytest.raises(CuratorError, match="option 'keep_percent' must be float"):
        build(tmp_path, candidates, [{"entropy": {"keep_percent": "lots"}}])


def test_changing_a_select_option_rescores_nothing(tmp_path, candidates):
    build(tmp_path, candidates, ["correctness", {"rationale_length": {"keep_percent": 80}}])
    SCORE_CALLS.clear()
    result = build(tmp_path, candidates, ["correctness", {"rationale_length": {"keep_percent": 20}}], name="b")
    assert SCORE_CALLS == []
    assert [s["cached"] for s in result.manifest["steps"]] == [True, True]


def test_a_crashed_build_resumes_without_rescoring_finished_batches(tmp_path, candidates):
    reference = build(tmp_path, candidates, ["rationale_length"], name="reference", cache=str(tmp_path / "c1"),
                      batch_rows=64)
    SCORE_CALLS.clear()
    CRASH_AFTER.append(3)
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            build(tmp_path, candidates, ["rationale_length"], batch_rows=64, cache=str(tmp_path / "c2"))
    finally:
        CRASH_AFTER.clear()
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not (tmp_path / "out" / "curated.parquet").exists()
    done_before_crash = 3
    SCORE_CALLS.clear()
    build(tmp_path, candidates, ["rationale_length"], batch_rows=64, cache=str(tmp_path / "c2"))
    total_batches = len(json.loads(next((tmp_path / "c2" / "prepared").glob("*.json")).read_text())["offsets"])
    assert len(SCORE_CALLS) == total_batches - done_before_crash
    for name in ("curated", "rejected"):
        resumed = pq.read_table(tmp_path / "out" / f"{name}.parquet")
        assert resumed.equals(pq.read_table(reference.output_dir / f"{name}.parquet"))


KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
import helpers_build
from helpers_build import RationaleLength
original = RationaleLength.score
def slow(self, batch, context):
    time.sleep(0.05)
    return original(self, batch, context)
RationaleLength.score = slow
helpers_build.build(__import__('pathlib').Path({tmp!r}), __import__('pathlib').Path({input!r}),
                     ["rationale_length"], batch_rows=16, cache={cache!r})
"""


def test_kill_9_mid_build_then_rerun_equals_an_uninterrupted_run(tmp_path, candidates):
    script = KILL_SCRIPT.format(tests=str(TESTS), tmp=str(tmp_path), input=str(candidates), cache=str(tmp_path / "c"))
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    scores = tmp_path / "c" / "scores"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(scores.glob("*/part-*.arrow"))) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    parts = list(scores.glob("*/part-*.arrow"))
    stored = sum(ipc.open_file(str(part)).read_all().num_rows for part in parts)
    assert len(parts) >= 5 and not (tmp_path / "out" / "manifest.json").exists()
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    resumed = json.loads((tmp_path / "out" / "manifest.json").read_text())["steps"][0]
    assert resumed["rows_scored"] == resumed["rows_in"] - stored > 0  # only what the killed run had not stored
    reference = build(tmp_path, candidates, ["rationale_length"], name="reference", batch_rows=16,
                      cache=str(tmp_path / "fresh"))
    for name in ("curated", "rejected"):
        assert pq.read_table(tmp_path / "out" / f"{name}.parquet").equals(
            pq.read_table(reference.output_dir / f"{name}.parquet"))


def test_editing_a_file_an_option_names_rescores(tmp_path, candidates):
    bonus = tmp_path / "bonus.txt"
    bonus.write_text("1.5")
    first = build(tmp_path, candidates, ["file_bonus"])
    assert set(pq.read_table(first.output_dir / "curated.parquet").column("bonus").to_pylist()) == {1.5}
    SCORE_CALLS.clear()
    assert build(tmp_path, candidates, ["file_bonus"]).manifest["steps"][0]["cached"] is True
    assert SCORE_CALLS == []
    bonus.write_text("2.25")
    os.utime(bonus, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    again = build(tmp_path, candidates, ["file_bonus"])
    assert again.manifest["steps"][0]["cached"] is False
    assert set(pq.read_table(again.output_dir / "curated.parquet").column("bonus").to_pylist()) == {2.25}


def test_warnings_while_scoring_name_the_step_and_reach_the_manifest(tmp_path, candidates):
    with pytest.warns(UserWarning, match=r"filter step 'picky': \d+ rows looked odd"):
        result = build(tmp_path, candidates, [{"grumpy": {"name": "picky"}}], batch_rows=1000)
    warned = result.manifest["steps"][0]["warnings"]
    assert len(warned) >= 1 and all(w.startswith("filter step 'picky': ") for w in warned)
    # one per batch, each with its own batch's rows, though batches score two at once in threads
    counts = [int(re.search(r"(\d+) rows looked odd", w).group(1)) for w in warned]
    assert sum(counts) == result.manifest["rows_in"] and len(counts) > 1
    cached = build(tmp_path, candidates, [{"grumpy": {"name": "picky"}}], batch_rows=1000, name="again")
    assert cached.manifest["steps"][0]["cached"] is True
    assert cached.manifest["steps"][0]["warnings"] == warned


def test_the_recipe_device_reaches_the_filters(tmp_path, candidates):
    default = build(tmp_path, candidates, ["device_probe"], name="default")
    assert set(pq.read_table(default.output_dir / "curated.parquet").column("device").to_pylist()) == {None}
    pinned = build(tmp_path, candidates, ["device_probe"], name="pinned", device="cpu", cache=str(tmp_path / "other"))
    assert set(pq.read_table(pinned.output_dir / "curated.parquet").column("device").to_pylist()) == {"cpu"}


def test_each_steps_bar_counts_the_rows_that_reach_it_and_moves_within_a_batch(tmp_path, candidates, monkeypatch):
    import curator.build.run as run
    from curator.progress import report_rows

    bars: dict[str, dict] = {}

    class Bar:
        def __init__(self, total, label):
            self.record = bars.setdefault(label, {"total": total, "updates": []})

        def update(self, n):
            assert isinstance(n, int)
            if n:
                self.record["updates"].append(n)

    class Context:
        def __init__(self, total, label, **options):
            self.bar = Bar(total, label)

        def __enter__(self):
            return self.bar

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(run, "progress_bar", Context)
    original = helpers_build.RationaleLength.score

    def chatty(self, batch, context):
        for _ in range(batch.num_rows):
            report_rows(1)
        report_rows(5)  # over-reporting (e.g. a validation set) never runs ahead of the batch
        return original(self, batch, context)

    monkeypatch.setattr(helpers_build.RationaleLength, "score", chatty)
    rows = pq.read_metadata(candidates).num_rows
    result = build(tmp_path, candidates, ["correctness", "rationale_length"], batch_rows=100)
    reaching = result.manifest["steps"][1]["rows_in"]
    assert set(bars) == {"correctness", "rationale_length", "writing"}
    assert 0 < reaching < rows and isinstance(bars["rationale_length"]["total"], int)
    assert bars["correctness"]["total"] == rows and sum(bars["correctness"]["updates"]) == rows
    assert bars["rationale_length"]["total"] == reaching  # not every input row: its ETA is right
    assert sum(bars["rationale_length"]["updates"]) == reaching and set(bars["rationale_length"]["updates"]) == {1}
    assert bars["writing"]["total"] == rows and sum(bars["writing"]["updates"]) == rows
    bars.clear()
    build(tmp_path, candidates, ["correctness", "rationale_length"], batch_rows=100, name="cached")
    assert bars["rationale_length"]["updates"] == [reaching]  # cached rows count at once


def test_a_step_that_drops_every_row_warns_in_the_log_and_the_manifest(tmp_path, candidates):
    with pytest.warns(UserWarning, match=r"filter step 'none' dropped every row that reached it \(\d+→0\)"):
        result = build(tmp_path, candidates, [{"rationale_length": {"keep_percent": 0, "name": "none"}},
                                              {"entropy": {"keep_percent": 50}}, "half_weight"])
    first, *later = result.manifest["steps"]
    assert any("dropped every row" in w for w in first["warnings"])
    for step in later:  # steps that receive nothing still fit (a percentile of nothing) and do not warn
        assert step["rows_in"] == 0 and not any("dropped every row" in w for w in step["warnings"])
    assert later[0]["stats"]["threshold"] is None


def test_the_manifest_carries_what_each_score_column_means(tmp_path, candidates):
    result = build(tmp_path, candidates, ["correctness", {"majority_vote": {"name": "vote"}}, "entropy",
                                          "half_weight"])
    meaning = {s["step"]: s["meaning"] for s in result.manifest["steps"]}
    assert meaning == {
        "correctness": {"correct": "boolean"},
        "vote": {"vote_answer_vote": "categorical", "vote_share_vote": "higher"},
        "entropy": {"answer_entropy": "lower"},  # its hidden column _agrees is not an output
        "half_weight": {"odd": None},  # undeclared
    }


def test_every_built_in_filter_declares_its_score_columns_and_scope():
    from curator.filter import SCORE_MEANINGS
    from curator.plugins import get_registry

    registry = get_registry()
    for entry in registry.all():
        if entry.kind != "filter" or entry.distribution != "rationale-curator":
            continue
        name, cls = entry.name, registry.filter(entry.name)
        public = [c for c in cls.columns if not c.startswith("_")]
        assert cls.score_meaning and set(cls.score_meaning) <= set(public), name
        assert set(cls.score_meaning.values()) <= set(SCORE_MEANINGS), name
        assert "scope" in vars(cls), f"{name} states its scope"


def test_a_bad_score_meaning_is_an_error_naming_the_plugin(tmp_path, candidates, monkeypatch):
    monkeypatch.setattr(helpers_build.HalfWeight, "score_meaning", {"odd": "biggest"})
    with pytest.raises(CuratorError, match=r"filter 'half_weight' \(.*\): score_meaning of 'odd' must be one of"):
        build(tmp_path, candidates, ["half_weight"])


def test_missing_optional_packages_stop_the_build_before_any_step_runs(tmp_path, candidates, monkeypatch):
    SCORE_CALLS.clear()
    with pytest.raises(CuratorError, match=r"^filter step 'needs_missing' needs the package 'curator_no_such_module' "
                                           r"\(pip install 'curator-missing\[gpu\]'\)$"):
        build(tmp_path, candidates, ["rationale_length", "needs_missing"], cache=str(tmp_path / "c"))
    assert SCORE_CALLS == [] and not (tmp_path / "c" / "prepared").exists()  # not even the input was read
    import importlib.util

    real, missing = importlib.util.find_spec, {"torch", "ray"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    with pytest.raises(CuratorError, match=r"^filter step 'ds_weight' needs the package 'torch' "
                                           r"\(pip install 'rationale-curator\[lm\]'\)$"):
        build(tmp_path, candidates, ["rationale_length", {"ds_weight": {"model": "m", "valid": "v.jsonl"}}])
    with pytest.raises(CuratorError, match=r"^the ray executor needs the package 'ray' "
                                           r"\(pip install 'rationale-curator\[ray\]'\)$"):
        build(tmp_path, candidates, ["rationale_length"], executor="ray")


def test_recipe_executor_and_step_concurrency_are_checked(tmp_path, candidates):
    from curator.build import parse_recipe

    base = {"input": "in.parquet", "task": "gsm8k", "output": "out"}
    recipe = parse_recipe({**base, "executor": "ray", "filters": [{"ds_weight": {"model": "m", "concurrency": 3}}]},
                          base_dir=tmp_path)
    assert recipe.executor == "ray" and recipe.steps[0].concurrency == 3 and recipe.steps[0].options == {"model": "m"}
    with pytest.raises(CuratorError, match="'executor' must be one of local, ray, got 'spark'"):
        parse_recipe({**base, "executor": "spark"}, base_dir=tmp_path)
    with pytest.raises(CuratorError, match=r"filters\[0\] \(entropy\): 'concurrency' must be a positive integer"):
        parse_recipe({**base, "filters": [{"entropy": {"concurrency": 0}}]}, base_dir=tmp_path)
    local = build(tmp_path, candidates, [{"rationale_length": {"concurrency": 2}}])
    assert local.manifest["executor"] == {"name": "local"}


def test_the_command_line_draws_a_bar_per_step_with_integer_counts_only_when_asked(tmp_path):
    recipe = ROOT / "examples" / "gsm8k" / "self_consistency.yaml"
    # a percentile cut needs every score before it selects: a pass, and a bar, per step
    shown = subprocess.run([sys.executable, "-m", "curator", "build", str(recipe), "--output", str(tmp_path / "a"),
                            "--set", "filters=[correctness, {entropy: {keep_percent: 50}}]",
                            "--progress"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    reaching = manifest["steps"][1]["rows_in"]
    assert "correctness: 100%" in shown.stderr and "1200/1200" in shown.stderr
    assert f"{reaching}/{reaching}" in shown.stderr and reaching < 1200  # entropy's bar counts the rows it gets
    assert "1.20k" not in shown.stderr
    # a fixed threshold needs none: one pass through both steps, one bar
    fused = subprocess.run([sys.executable, "-m", "curator", "build", str(recipe), "--output", str(tmp_path / "c"),
                            "--set", "filters=[correctness, entropy]", "--progress"], capture_output=True, text=True)
    assert fused.returncode == 0, fused.stderr
    assert "correctness → entropy: 100%" in fused.stderr and "1200/1200" in fused.stderr
    assert "correctness: " not in fused.stderr and "writing" not in fused.stderr
    hidden = subprocess.run([sys.executable, "-m", "curator", "build", str(recipe), "--output", str(tmp_path / "b")],
                            capture_output=True, text=True)
    assert hidden.returncode == 0 and "rows/s" not in hidden.stderr  # stderr is not a terminal here
