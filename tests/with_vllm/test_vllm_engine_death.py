"""Defect 2 of issue 10, offline: a vLLM engine that dies ends ``curator generate`` with one line.

The engine is made to die the way it does on CPU with chunked prefill on: a
seeded request whose prompt is prefilled in chunks (``CPU Generator does
not use offset``). The backend turns chunked prefill off on CPU, so this
test turns it back on to make sure the death itself is still handled.

What vLLM's own engine and worker processes print as they die is theirs (on
their stderr, which they share with this process): depending on which of
them goes first, that includes a traceback of vLLM's code. This process's
part is the last line, and no stack of curator's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_vllm import generate_args

pytestmark = pytest.mark.vllm


def test_a_dead_engine_is_one_line_and_no_traceback(chat_model, tmp_path):
    long = " ".join(f"Tom has {i} apples and buys {i + 1} more." for i in range(40))
    questions = tmp_path / "long.jsonl"
    questions.write_text("".join(json.dumps({"id": f"q{i}", "question": f"{long} Q{i}?"}) + "\n" for i in range(4)))
    args = generate_args(questions, tmp_path / "out", chat_model, "--backend", "vllm", "--dtype", "float32",
                         "--n", "2", "--temperature", "1.0", "--seed", "1",
                         "--backend-option", "enable_chunked_prefill=true",
                         "--backend-option", "max_num_batched_tokens=64")
    done = subprocess.run([sys.executable, "-m", "curator", *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    lines = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 2, "\n".join(lines[-30:])
    [ours] = [line for line in lines if line.startswith("curator:")]
    assert ours.startswith(f"curator: error: vLLM's engine for {chat_model} stopped")
    assert done.stderr.splitlines()[-1] == ours
    repo = Path(__file__).resolve().parents[2]
    assert not any(f'File "{repo}' in line for line in lines)  # no frame of curator's code, nor of a plugin's
    assert not (tmp_path / "out" / "candidates.parquet").exists()
