"""What commands leave behind: files with the umask's mode, and resumes that lose nothing."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_build import build, read_split
from helpers_cli import exit_code

from curator.outputs import atomic_path, write_json
from curator.testing import make_candidates

UMASK = 0o027
"""Neither the usual 022 nor what ``mkstemp`` gives (0600), so both a hard-coded mode and the temporary's show."""


@pytest.fixture
def umask():
    previous = os.umask(UMASK)
    yield 0o666 & ~UMASK, 0o777 & ~UMASK
    os.umask(previous)


def modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in sorted(folder.rglob("*"))
            if not p.is_symlink()}


def cli(*args: str) -> None:
    assert exit_code(list(args)) == 0, args


def test_atomic_files_get_the_umask_mode(tmp_path, umask):
    with atomic_path(tmp_path / "a.bin") as tmp:
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600  # private while it is written
        tmp.write_bytes(b"x")
    write_json(tmp_path / "b.json", {})
    assert modes(tmp_path) == {"a.bin": umask[0], "b.json": umask[0]}


def test_every_output_of_every_command_is_readable_as_the_umask_says(tmp_path, umask, tiny_llama, stub):
    file_mode, folder_mode = umask
    candidates = tmp_path / "c.parquet"
    pq.write_table(make_candidates([["1", "1", "2"], ["5", "5"]], references=["1", "5"]), candidates)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"input": str(candidates), "task": "gsm8k", "filters": ["majority_vote"],
                                  "output": str(tmp_path / "build"), "rejected_by_step": True}))
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "t", "question": "1 + 1?", "reference": "2"}) + "\n")
    cli("build", str(recipe))
    cli("compare", str(recipe), "--output", str(tmp_path / "compare"))
    cli("export", str(tmp_path / "build" / "curated.parquet"), "--format", "alpaca",
        "--output", str(tmp_path / "export" / "out.jsonl"))
    cli("train", "--data", str(candidates), "--model", str(tiny_llama), "--output", str(tmp_path / "train"),
        "--max-steps", "2", "--save-every", "1", "--merge", "--no-progress")
    cli("eval", "--model", str(tiny_llama), "--adapter", str(tmp_path / "train"), "--data", str(questions),
        "--task", "gsm8k", "--strategy", "greedy", "--max-tokens", "2", "--output", str(tmp_path / "eval"))
    server = stub()
    cli("generate", "--input", str(questions), "--output", str(tmp_path / "generate"), "--task", "gsm8k",
        "--backend", "openai", "--model", "stub-model", "--base-url", server.base_url, "--no-progress")
    written = {}
    for command in ("build", "compare", "export", "train", "eval", "generate"):
        written.update({f"{command}/{name}": mode for name, mode in modes(tmp_path / command).items()})
    for name in ("build/manifest.json", "compare/report.html", "export/out.jsonl", "train/loss.png",
                 "train/adapter_model.safetensors", "train/merged/model.safetensors", "eval/predictions.parquet",
                 "generate/candidates.parquet"):
        assert name in written
    wrong = {name: oct(mode) for name, mode in written.items()
             if mode != (folder_mode if (tmp_path / name).is_dir() else file_mode)}
    assert not wrong


# -- resuming --------------------------------------------------------------------------------------


def test_a_resumed_build_keeps_the_warnings_of_batches_scored_before_the_kill(tmp_path):
    """Scoring warnings are stored with the scores, so a build that resumes from them reports them too."""
    rows = make_candidates([["1", "1"], ["2", "2"], ["3", "3"]]).to_pylist()
    rows[1]["sample"] = 0  # q0 repeats (id, sample): majority_vote warns while scoring its batch
    killed, whole = tmp_path / "killed.parquet", tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist(rows[:2]), killed)  # what was scored before the kill: q0's batch
    pq.write_table(pa.Table.from_pylist(rows), whole)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build(tmp_path, killed, ["majority_vote"], name="killed", batch_rows=2)
        resumed = build(tmp_path, whole, ["majority_vote"], name="resumed", batch_rows=2)
        fresh = build(tmp_path, whole, ["majority_vote"], name="fresh", batch_rows=2, cache=str(tmp_path / "c2"))
    step = resumed.manifest["steps"][0]
    assert step["rows_scored"] == 4  # q1 and q2; q0's scores came from the cache
    assert len(step["warnings"]) == 1
    assert "2 rows share their (id, sample) with another row (first: id 'q0', sample 0)" in step["warnings"][0]
    assert step["warnings"] == fresh.manifest["steps"][0]["warnings"]
    assert read_split(resumed.output_dir)[0].equals(read_split(fresh.output_dir)[0])


def test_train_resume_without_a_checkpoint_says_so(tmp_path, tiny_llama):
    from curator.train import TrainConfig, run_train

    config = TrainConfig(data=str(_train_data(tmp_path)), model=str(tiny_llama), output=str(tmp_path / "out"),
                         max_steps=1, resume=True, progress=False)
    with pytest.warns(UserWarning, match="no checkpoint to resume from; starting a new run"):
        result = run_train(config)
    assert result.steps == 1


def test_the_first_loss_logged_after_a_resume_is_an_uninterrupted_runs(tmp_path, tiny_llama, one_thread):
    from curator.train import TrainConfig, run_train

    data = _train_data(tmp_path)

    def config(output: str, **extra: object) -> TrainConfig:
        return TrainConfig(data=str(data), model=str(tiny_llama), output=str(tmp_path / output), max_steps=6,
                           log_every=3, save_every=1, batch_tokens=64, progress=False, **extra)

    whole = run_train(config("whole"))

    def crash_at_step_3(record: dict) -> None:
        if record["step"] == 3:  # the kill, after the checkpoint of step 2 and before the one of step 3
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_train(config("resumed"), callbacks=[crash_at_step_3])
    resumed = run_train(config("resumed", resume=True))
    assert resumed.steps == whole.steps == 6
    logged = [[(r["step"], r["loss"]) for r in map(json.loads, (tmp_path / name / "metrics.jsonl").open())]
              for name in ("whole", "resumed")]
    assert [step for step, _ in logged[1]] == [step for step, _ in logged[0]] == [1, 3, 6]  # step 1: the plot's start
    assert [loss for _, loss in logged[1]] == pytest.approx([loss for _, loss in logged[0]], rel=1e-6)


def _train_data(tmp_path: Path) -> Path:
    path = tmp_path / "train.parquet"
    if not path.exists():
        pq.write_table(make_candidates([["1", "2", "3", "4"], ["5", "6", "7", "8"]]), path)
    return path


def test_a_metrics_line_cut_short_by_a_kill_is_dropped_on_resume(tmp_path, tiny_llama):
    from curator.train import TrainConfig, run_train

    def config(**extra: object) -> TrainConfig:
        return TrainConfig(data=str(_train_data(tmp_path)), model=str(tiny_llama), output=str(tmp_path / "out"),
                           log_every=1, save_every=1, progress=False, **extra)

    run_train(config(max_steps=2))
    metrics = tmp_path / "out" / "metrics.jsonl"
    with metrics.open("a") as handle:
        handle.write('{"step": 3, "lo')  # the write a kill interrupted
    result = run_train(config(max_steps=3, resume=True))
    assert result.steps == 3
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3]
