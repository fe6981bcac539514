"""``curator compare`` from the command line, with ``--train-eval`` on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curator.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gsm8k" / "candidates.jsonl"


def _recipes(root: Path) -> list[Path]:
    candidates = root / "candidates.jsonl"
    candidates.write_text("".join(EXAMPLE.read_text().splitlines(keepends=True)[:40]))  # 10 questions
    paths = []
    for name, step in (("vote", "majority_vote"), ("correct", "correctness")):
        path = root / f"{name}.yaml"
        path.write_text(f"input: candidates.jsonl\ntask: gsm8k\nfilters: [{step}]\n")
        paths.append(path)
    return paths


def test_train_eval_adds_an_accuracy_column(tiny_llama, tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.setenv("CURATOR_CACHE", str(tmp_path / "cache"))
    recipes = _recipes(tmp_path)
    test = tmp_path / "test.jsonl"
    test.write_text(
        "".join(
            json.dumps(
                {"question": f"Kai has {a} eggs and buys {a} more. How many?", "reference": str(2 * a)}
            )
            + "\n"
            for a in (3, 5, 8)
        )
    )
    out = tmp_path / "out"
    main(["compare", *map(str, recipes), "--output", str(out), "--train-eval", "--model", str(tiny_llama),
          "--eval-data", str(test), "--max-steps", "2", "--max-tokens", "8", "--no-progress"])  # fmt: skip
    line = capsys.readouterr().out
    assert line.startswith("compared 2 recipes (vote ") and str(out / "report.html") in line
    stored = {r["name"]: r for r in json.loads((out / "report.json").read_text())["recipes"]}
    table = [
        x for x in (out / "report.md").read_text().splitlines() if x.startswith(("| vote |", "| correct |"))
    ]
    for name, row in zip(("vote", "correct"), table[:2], strict=True):
        folder = out / "recipes" / name
        predictions = pq.read_table(folder / "eval" / "predictions.parquet")["correct"].to_pylist()
        metrics = json.loads((folder / "eval" / "metrics.json").read_text())
        assert metrics["config"]["adapter"] == str(folder / "adapter")
        assert (folder / "adapter" / "adapter_model.safetensors").exists()
        assert json.loads((folder / "adapter" / "manifest.json").read_text())["steps"] == 2
        accuracy = sum(predictions) / 3
        assert stored[name]["accuracy"]["accuracy"] == pytest.approx(accuracy)
        low, high = metrics["ci95"]
        assert row.endswith(f"| {accuracy:.3f} [{low:.3f}, {high:.3f}] |")
    curated = pq.read_table(out / "recipes" / "correct" / "curated.parquet")
    assert stored["correct"]["rows_kept"] == curated.num_rows and stored["correct"]["precision"] == 1.0


def test_train_eval_needs_a_model_and_test_set(tmp_path, capsys):
    recipes = _recipes(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *map(str, recipes), "--output", str(tmp_path / "out"), "--train-eval"])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err.strip()
        == "curator: error: compare --train-eval needs --model and --eval-data"
    )
