"""What the vLLM tests share besides fixtures: running the CLI in-process, reading its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from helpers_cli import exit_code as run

from curator.testing.tiny import arithmetic_corpus

ADAPTER_RANK = 8


def train_adapter(model: Path, output: Path, steps: int = 3) -> Path:
    """A LoRA adapter from ``curator train`` itself on a few arithmetic rationales."""
    data = output.parent / f"{output.name}-data.parquet"
    rows = []
    for i, line in enumerate(arithmetic_corpus(16, seed=3)):
        question, rationale = line.split("\nA: ")
        rows.append({"id": f"t{i}", "question": question[3:], "rationale": rationale})
    pq.write_table(pa.Table.from_pylist(rows), data)
    code = run(["train", "--data", str(data), "--model", str(model), "--output", str(output),
                "--max-steps", str(steps), "--lr", "2e-2", "--lora-r", str(ADAPTER_RANK), "--no-progress"])
    assert code == 0 and (output / "adapter_model.safetensors").is_file()
    return output


def generate_args(questions: Path, output: Path, model: str | Path, *extra: str) -> list[str]:
    return ["generate", "--input", str(questions), "--output", str(output), "--task", "gsm8k",
            "--model", str(model), "--max-tokens", "16", "--answer-max-tokens", "8", "--no-progress", *extra]


def candidates(output: Path) -> list[dict]:
    return pq.read_table(output / "candidates.parquet").to_pylist()


def manifest(output: Path) -> dict:
    return json.loads((output / "manifest.json").read_text())
