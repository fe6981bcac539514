"""Defect 2 of issue 10, served: a vLLM server that dies ends ``curator generate`` with one line.

The server is started with chunked prefill on and a small prefill step, the
way per-request seeds kill vLLM's CPU engine; before the fix every question
was recorded as ``APIConnectionError``, hundreds of identical failures.
"""

from __future__ import annotations

import json
import time

import pytest
from helpers_vllm import generate_args, run

from curator.testing.vllm_server import VLLMServer

pytestmark = pytest.mark.vllm


def test_a_server_that_dies_ends_the_run_with_one_line(chat_model, tmp_path, capsys):
    long = " ".join(f"Tom has {i} apples and buys {i + 1} more." for i in range(40))
    questions = tmp_path / "long.jsonl"
    questions.write_text("".join(json.dumps({"id": f"q{i}", "question": f"{long} Q{i}?"}) + "\n" for i in range(30)))
    crashing = ("--enable-chunked-prefill", "--max-num-batched-tokens", "64")
    with VLLMServer(chat_model, "--dtype", "float32", "--max-model-len", "1024", name="tiny",
                    cpu_flags=crashing) as server:
        args = generate_args(questions, tmp_path / "out", "tiny", "--backend", "openai", "--base-url",
                             server.base_url, "--n", "2", "--temperature", "1.0", "--seed", "1", "--retries", "2",
                             "--concurrency", "8")
        code = run(args)
        deadline = time.monotonic() + 120  # the server stops listening first, and exits a little later
        while server.alive() and time.monotonic() < deadline:
            time.sleep(1)
        assert not server.alive(), "the server was expected to die of the seeded chunked prefill"
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("curator:")]
    assert code == 2
    assert err == [f"curator: error: the server at {server.base_url} stopped accepting connections; what finished "
                   "is saved: start it again and re-run the same command to continue"]
    assert not (tmp_path / "out" / "candidates.parquet").exists()
