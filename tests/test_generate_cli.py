"""``curator generate`` end to end against a loopback server: outputs, failures, resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("openai")

from helpers_cli import exit_code  # noqa: E402

from curator.testing.openai_server import OpenAIStubServer  # noqa: E402

SECRET = "sk-test-secret-do-not-write"


def _questions(path: Path, count: int, poison: int | None = None) -> Path:
    with path.open("w") as out:
        for i in range(count):
            text = f"Sam has {i} apples and buys {i + 3} more. How many apples does he have?"
            text = f"POISON {text}" if i == poison else text
            out.write(json.dumps({"question": text, "answer": f"He has {i} + {i + 3}.\n#### {2 * i + 3}"}) + "\n")
    return path


def _args(questions: Path, output: Path, server: OpenAIStubServer, *extra: str) -> list[str]:
    return ["generate", "--input", str(questions), "--output", str(output), "--task", "gsm8k",
            "--backend", "openai", "--model", "stub-model", "--base-url", server.base_url,
            "--no-progress", "--retries", "1", *extra]


def test_zero_shot_diverse_reasoning_end_to_end(stub, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = stub(api_key=SECRET)
    questions = _questions(tmp_path / "q.jsonl", 6)
    out = tmp_path / "out"
    extra = ("--n", "3", "--temperature", "0.7", "--seed", "1", "--price-input", "1", "--price-output", "2")
    assert exit_code(_args(questions, out, server, *extra)) == 0
    assert "6 questions, 18 candidates, 0 failed" in capsys.readouterr().out

    table = pq.read_table(out / "candidates.parquet")
    assert table.schema.names == ["id", "question", "rationale", "answer", "reference", "sample", "model",
                                  "logprob", "n_tokens", "finish_reason", "answer_text"]
    assert table.schema.field("sample").type == pa.int32() and table.schema.field("logprob").type == pa.float64()
    rows = table.to_pylist()
    assert [r["sample"] for r in rows] == [0, 1, 2] * 6
    assert [r["question"] for r in rows[::3]] == [json.loads(line)["question"] for line in questions.open()]
    for row in rows:
        i = int(row["question"].split()[2])
        assert row["reference"] == str(2 * i + 3)
        assert row["rationale"].startswith(" We add the numbers") and "\nQ:" not in row["rationale"]
        # the stage-2 answer is the rationale's last number, and the parsed answer is the stage-2 one
        assert row["answer_text"] == f" {row['rationale'].split()[-1]}"
        assert row["answer"] == row["answer_text"].strip(" .")
        assert row["model"] == "stub-model" and row["logprob"] < 0 and row["n_tokens"] > 5
    assert sum(r["answer"] == r["reference"] for r in rows) >= 9  # the stub errs by one now and then

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"questions": 6, "done_before": 0, "changed": 0, "generated": 6, "failed": 0,
                                  "rows": 18, "answers_parsed": 18, "with_reference": True, "truncated": 0,
                                  "shortened_by_context": 0}
    assert manifest["warnings"] == []
    usage = manifest["usage"]
    assert usage["requests"] == 6 + len({(r["id"], r["rationale"]) for r in rows})
    assert usage["cost_usd"] == pytest.approx(usage["prompt_tokens"] * 1e-6 + usage["completion_tokens"] * 2e-6)
    assert manifest["settings"]["n"] == 3 and manifest["backend"]["api_key_env"] == "OPENAI_API_KEY"
    assert (out / "failures.jsonl").read_text() == ""
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_few_shot_chat_requests_are_cut_at_the_next_question(stub, tmp_path):
    server = stub(honour_stop=False)
    out = tmp_path / "out"
    args = _args(_questions(tmp_path / "q.jsonl", 2), out, server, "--prompt", "few-shot-cot", "--chat")
    assert exit_code(args) == 0
    table = pq.read_table(out / "candidates.parquet")
    assert "answer_text" not in table.column_names
    assert table["rationale"].to_pylist() == [" We add the numbers: 0 + 3 = 3. The answer is 3.\n",
                                              " We add the numbers: 1 + 4 = 5. The answer is 5.\n"]
    assert table["answer"].to_pylist() == ["3", "5"]
    assert table["finish_reason"].to_pylist() == ["stop", "stop"]  # cut here at the next question


def test_failures_are_recorded_then_retried_alone_by_the_same_command(stub, tmp_path, capsys):
    questions = _questions(tmp_path / "q.jsonl", 5, poison=2)
    out = tmp_path / "out"
    failing = stub(poison="POISON")
    assert exit_code(_args(questions, out, failing, "--prompt", "few-shot-cot", "--n", "2", "--temperature", "0.5")) == 1
    assert "1 questions failed after retries" in capsys.readouterr().err
    [failure] = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    poisoned = pq.read_table(out / "candidates.parquet")
    assert failure["stage"] == 1 and failure["error"].startswith("HTTP 500")
    assert failure["id"] not in poisoned["id"].to_pylist() and poisoned.num_rows == 8
    assert json.loads((out / "manifest.json").read_text())["counts"]["failed"] == 1

    healthy = stub()
    assert exit_code(_args(questions, out, healthy, "--prompt", "few-shot-cot", "--n", "2", "--temperature", "0.5")) == 0
    assert healthy.stats()["requests"] == 1  # just the question that failed
    table = pq.read_table(out / "candidates.parquet")
    assert table.num_rows == 10 and table.slice(4, 2)["id"].to_pylist() == [failure["id"]] * 2
    assert (out / "failures.jsonl").read_text() == ""
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["done_before"] == 4 and manifest["usage_all_runs"]["requests"] > 1


def test_resume_after_kill_9_equals_an_uninterrupted_run(stub, tmp_path):
    server = stub(delay=0.02)
    questions = _questions(tmp_path / "q.jsonl", 40)
    extra = ("--n", "3", "--temperature", "0.7", "--seed", "5", "--concurrency", "4", "--flush-seconds", "0.05")
    assert exit_code(_args(questions, tmp_path / "full", server, *extra)) == 0

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "curator", *_args(questions, killed, server, *extra)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list((killed / ".progress").glob("part-*.arrow")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "candidates.parquet").exists()

    assert exit_code(_args(questions, killed, server, *extra)) == 0
    full, resumed = (pq.read_table(path / "candidates.parquet") for path in (tmp_path / "full", killed))
    assert resumed.equals(full)
    pairs = list(zip(resumed["id"].to_pylist(), resumed["sample"].to_pylist()))
    assert len(pairs) == len(set(pairs)) == 120
    counts = json.loads((killed / "manifest.json").read_text())["counts"]
    assert counts["done_before"] > 0 and counts["done_before"] + counts["generated"] == 40
    assert not list((killed / ".progress").glob("part-*"))


def test_a_folder_holding_other_settings_is_refused(stub, tmp_path, capsys):
    server = stub()
    questions = _questions(tmp_path / "q.jsonl", 2)
    sampled = ("--temperature", "0.5")
    assert exit_code(_args(questions, tmp_path / "out", server, "--n", "2", *sampled)) == 0
    assert exit_code(_args(questions, tmp_path / "out", server, "--n", "4", *sampled)) == 2
    assert "holds a run with other settings (n: 2 then, 4 now)" in capsys.readouterr().err
    # the same command again is a no-op that rewrites the same output
    before = pq.read_table(tmp_path / "out" / "candidates.parquet")
    assert exit_code(_args(questions, tmp_path / "out", server, "--n", "2", *sampled)) == 0
    assert pq.read_table(tmp_path / "out" / "candidates.parquet").equals(before)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--input": "missing.jsonl"}, "missing.jsonl: no such file or folder"),
        ({"--task": "nope"}, "unknown task 'nope'"),
        ({"--backend": "nope"}, "unknown backend 'nope'"),
        ({"--task": "math", "--prompt": "few-shot-cot"}, "few-shot-cot needs --exemplars for task 'math'"),
        ({"--backend-option": "novalue"}, "--backend-option: expected KEY=VALUE"),
        ({"--n": "0"}, "Invalid value for '--n'"),
    ],
)
def test_bad_input_exits_2_with_one_line(stub, tmp_path, capsys, change, message):
    args = _args(_questions(tmp_path / "q.jsonl", 1), tmp_path / "out", stub())
    for key, value in change.items():
        if key in args:
            args[args.index(key) + 1] = str(tmp_path / value) if key == "--input" else value
        else:
            args += [key, value]
    assert exit_code(args) == 2
    assert message in capsys.readouterr().err


def test_vllm_backend_without_vllm_is_a_clean_error_before_any_bar(tmp_path, capsys):
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vllm is installed")
    args = ["generate", "--input", str(_questions(tmp_path / "q.jsonl", 1)), "--output", str(tmp_path / "out"),
            "--task", "gsm8k", "--backend", "vllm", "--model", "m", "--progress"]
    assert exit_code(args) == 2
    assert capsys.readouterr().err.splitlines() == [  # the bar, asked for, is not drawn before the failure
        "curator: error: the vllm backend needs the package 'vllm' (pip install vllm)"
    ]
