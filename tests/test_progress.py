"""Progress bars alike everywhere: whole counts, only on a terminal unless asked, none before a failure;
and the libraries' own bars and deprecation notices kept quiet unless CURATOR_VERBOSE=1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curator.cli import main
from curator.progress import progress_bar


def _questions(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"question": f"Sam has {i} apples. How many?"}) + "\n" for i in range(count)))
    return path


def test_counts_are_whole_numbers(capsys):
    with progress_bar(40, "generate", enabled=True, unit="q") as bar:
        bar.update(1)
    err = capsys.readouterr().err
    assert "| 1/40 [" in err and "q/s" in err and "1.00" not in err and "40.0" not in err


def test_a_resumed_bar_starts_where_the_run_was(capsys):
    with progress_bar(8, "train", enabled=True, unit="steps", initial=4) as bar:
        bar.update(1)
    assert "| 5/8 [" in capsys.readouterr().err


@pytest.mark.parametrize("progress", [[], ["--progress"]])
def test_generate_draws_on_a_redirected_stderr_only_when_asked(stub, tmp_path, capsys, progress):
    pytest.importorskip("openai")
    server = stub()
    args = ["generate", "--input", str(_questions(tmp_path / "q.jsonl", 3)), "--output", str(tmp_path / "out"),
            "--task", "gsm8k", "--backend", "openai", "--model", "m", "--base-url", server.base_url, *progress]
    main(args)  # exits only on failure
    captured = capsys.readouterr()
    assert captured.out.startswith("3 questions, 3 candidates, 0 failed")
    assert ("generate: 100%" in captured.err and "| 3/3 [" in captured.err) == bool(progress)
    if not progress:
        assert captured.err == ""


@pytest.mark.slow
def test_transformers_own_bars_and_deprecations_only_with_curator_verbose(tiny_llama, tmp_path):
    pytest.importorskip("peft")
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "curated.parquet"
    rows = [{"id": f"q{i}", "question": f"Q{i}?", "rationale": f"The answer is {i}."} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), data)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")}

    def train(output: str, **extra: str) -> subprocess.CompletedProcess:
        argv = ["train", "--data", str(data), "--model", str(tiny_llama), "--output", str(tmp_path / output),
                "--max-steps", "1"]
        return subprocess.run([sys.executable, "-m", "curator", *argv], capture_output=True, text=True,
                              env={**env, **extra})

    quiet, verbose = train("quiet"), train("verbose", CURATOR_VERBOSE="1")
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert quiet.stdout.startswith("trained 1 steps") and quiet.stderr == ""
    assert "Loading weights" in verbose.stderr and "FutureWarning" in verbose.stderr  # what the switch hides


def test_main_in_a_process_that_already_imported_transformers_quiets_its_bars(monkeypatch):
    pytest.importorskip("transformers")
    from transformers.utils import logging as transformers_logging

    from curator.cli import quiet_libraries

    monkeypatch.delenv("CURATOR_VERBOSE", raising=False)
    transformers_logging.enable_progress_bar()
    transformers_logging.set_verbosity_warning()
    try:
        quiet_libraries()  # what main() runs first
        assert not transformers_logging.is_progress_bar_enabled()
        assert transformers_logging.get_verbosity() == transformers_logging.ERROR
    finally:
        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
