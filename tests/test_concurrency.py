"""Two runs into one output folder: the second stops with one line; a folder with a manifest is complete.

Real processes: a first build is held inside its scoring step (its filter
waits for a file the test writes) while a second ``curator build`` targets
the same folder. ``kill -9`` of the holder releases the folder (the kernel
drops flocks) and the next run sweeps what the dead one left. Builds that
share only the score cache run side by side, and one never removes another's
live temporaries there. Every other writing command refuses a held folder
the same way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curator.cli import main
from curator.outputs import output_lock
from curator.testing import make_candidates

HOLDER = """
import pathlib, sys, time
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from curator import Filter, Selection, hookimpl
from curator.build import load_recipe, run_build
from curator.plugins import registry_for

MARK, GO = pathlib.Path({mark!r}), pathlib.Path({go!r})


@dataclass(kw_only=True)
class WaitForGo(Filter):
    name = "wait_for_go"
    columns = ("length",)
    scope = "row"

    def score(self, batch, context):
        MARK.touch()
        while not GO.exists():
            time.sleep(0.02)
        return {{"length": pc.utf8_length(batch.column("rationale"))}}

    def fit(self, scores):  # reads its scores: a pass per step, whose scratch folder is there while it waits
        return {{"rows": scores.num_rows}}

    def select(self, batch, stats):
        return Selection(keep=np.ones(batch.num_rows, bool))


class Plugin:
    @staticmethod
    @hookimpl
    def register_filters(register):
        register(WaitForGo)


run_build(load_recipe({recipe!r}), registry=registry_for([Plugin], entry_points_too=True), progress=False)
"""


@pytest.fixture
def setup(tmp_path):
    candidates = tmp_path / "c.parquet"
    pq.write_table(make_candidates([["1", "1", "2"], ["5", "5"], ["3"]], references=["1", "5", "3"]), candidates)
    out, cache = tmp_path / "out", tmp_path / "cache"

    def recipe(name: str, filters: list, output: Path = out) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps({"input": str(candidates), "task": "gsm8k", "filters": filters,
                                    "output": str(output), "cache": str(cache)}))
        return path

    return tmp_path, out, cache, recipe


def start_holder(tmp_path: Path, recipe: Path) -> tuple[subprocess.Popen, Path]:
    mark, go = tmp_path / "scoring", tmp_path / "go"
    mark.unlink(missing_ok=True)
    go.unlink(missing_ok=True)
    script = HOLDER.format(mark=str(mark), go=str(go), recipe=str(recipe))
    holder = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not mark.exists():
        assert holder.poll() is None, holder.stderr.read() if holder.stderr else ""
        assert time.time() < deadline, "the holding build never started scoring"
        time.sleep(0.05)
    return holder, go


def curator_build(recipe: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curator", "build", str(recipe), "--no-progress"],
                          capture_output=True, text=True, timeout=300)


def assert_complete(out: Path, step: str) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["step"] for s in manifest["steps"]] == [step]
    curated, rejected = (pq.read_table(out / f"{name}.parquet") for name in ("curated", "rejected"))
    assert curated.num_rows == manifest["rows_out"] and rejected.num_rows == manifest["rows_rejected"]
    assert not list(out.rglob(".*.tmp"))
    return manifest


def test_a_second_build_into_a_held_folder_stops_and_the_first_completes(setup):
    tmp_path, out, cache, recipe = setup
    holding, second = recipe("holding", ["wait_for_go"]), recipe("second", ["majority_vote"])
    holder, go = start_holder(tmp_path, holding)
    try:
        scratch = list(out.glob(".scratch-*.tmp"))
        assert scratch  # the holder's working files, which the second run must leave alone
        run = curator_build(second)
        assert run.returncode == 2, run.stderr
        assert run.stderr.strip().splitlines() == [
            f"curator: error: {out}: another run is writing here (curator build, pid {holder.pid}); "
            "wait for it, or choose another output"
        ]
        assert all(p.exists() for p in scratch) and not (out / "manifest.json").exists()
        # a build into another folder shares the cache meanwhile, and leaves the holder's temporaries there
        live = cache / "prepared" / ".live.arrow.1234.tmp"
        live.write_bytes(b"being written")
        beside = curator_build(recipe("beside", ["majority_vote"], output=tmp_path / "beside"))
        assert beside.returncode == 0, beside.stderr
        assert live.exists()
    finally:
        go.touch()
        assert holder.wait(timeout=120) == 0, holder.stderr.read() if holder.stderr else ""
    assert_complete(out, "wait_for_go")
    run = curator_build(second)  # the lock went with the holder
    assert run.returncode == 0, run.stderr
    assert_complete(out, "majority_vote")
    assert not live.exists()  # swept by a build that had the cache to itself: its writer is gone


def test_kill_9_releases_the_folder_and_the_next_run_sweeps_what_it_left(setup):
    tmp_path, out, cache, recipe = setup
    holder, _ = start_holder(tmp_path, recipe("holding", ["wait_for_go"]))
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    left = list(out.glob(".*.tmp"))
    assert left and not (out / "manifest.json").exists()
    run = curator_build(recipe("next", ["majority_vote"]))
    assert run.returncode == 0, run.stderr
    assert not any(p.exists() for p in left)
    assert_complete(out, "majority_vote")


def test_builds_started_together_leave_one_complete_folder(setup):
    tmp_path, out, cache, recipe = setup
    recipes = [recipe("a", ["majority_vote"]), recipe("b", ["correctness"])]
    runs = [subprocess.Popen([sys.executable, "-m", "curator", "build", str(r), "--no-progress"],
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) for r in recipes]
    results = [(run.wait(timeout=300), run.stderr.read() if run.stderr else "") for run in runs]
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        assert code == 0 or (code == 2 and "another run is writing here" in err), err
    manifest = json.loads((out / "manifest.json").read_text())
    assert_complete(out, manifest["steps"][0]["step"])


@pytest.mark.parametrize("command", ["build", "train", "eval", "generate", "compare"])
def test_every_writing_command_refuses_a_held_folder(command, setup, capsys):
    tmp_path, out, cache, recipe = setup
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "t", "question": "1 + 1?", "reference": "2"}) + "\n")
    args = {
        "build": ["build", str(recipe("r", ["majority_vote"]))],
        "train": ["train", "--data", str(tmp_path / "c.parquet"), "--model", "m", "--output", str(out)],
        "eval": ["eval", "--model", "m", "--data", str(questions), "--task", "gsm8k", "--strategy", "greedy",
                 "--output", str(out)],
        "generate": ["generate", "--input", str(questions), "--task", "gsm8k", "--backend", "openai",
                     "--base-url", "http://127.0.0.1:9", "--model", "m", "--output", str(out)],
        "compare": ["compare", str(recipe("r2", ["majority_vote"], output=tmp_path / "elsewhere")), "--output", str(out)],
    }[command]
    with output_lock(out, "test"), pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"curator: error: {out}: another run is writing here (curator test, pid {os.getpid()}); "
                   "wait for it, or choose another output"]
    assert not (out / "manifest.json").exists() and not (out / "metrics.json").exists()
