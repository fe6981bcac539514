#!/usr/bin/env python3
"""The README's whole loop on a real pretrained model, SmolLM2-135M-Instruct, sized for two CPU cores.

    python examples/smollm2/run.py                      # fetches the model into examples/smollm2/model/ first
    MODEL=/path/to/smollm2 python examples/smollm2/run.py
    MODEL=HuggingFaceTB/SmolLM2-135M-Instruct python examples/smollm2/run.py   # on a machine with a hub

Stages, each a ``curator`` command as a user types it (printed before it runs):

1. ``curator generate --backend transformers``: few-shot CoT on GSM8K train
   questions, ``SAMPLES`` samples at T = 0.7, once with completion prompts and
   once with ``--chat`` (the model's chat template); the two are merged into
   one candidate set (``2 x SAMPLES`` per question).
2. ``curator build`` with four recipes: LMSI (majority_vote), IWSI
   (majority_vote -> ds_weight, SmolLM2 as M, GSM8K human solutions as the
   validation set), entropy, self_eval; and a correctness build whose kept and
   dropped rows train the ASC ranker.
3. ``curator compare --train-eval``: a LoRA adapter per recipe (and one on
   every candidate) and its greedy accuracy on held-back GSM8K test questions,
   beside the base model's.
4. ``curator train --objective ranker``, then ``curator eval`` of the IWSI
   adapter with greedy, self-consistency and ranked (ASC) voting.

Sizes come from environment variables (defaults in SIZES); ``out/summary.json``
records every stage's wall time and peak resident memory, the machine's load
before and after, and the figures. Everything is written under ``examples/smollm2/out/``, emptied first.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
OUT = HERE / "out"
HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"

SIZES = {
    "QUESTIONS": 24,  # GSM8K train questions to sample rationales for
    "SAMPLES": 4,  # samples per question and prompt style (so 2x per question in the candidate set)
    "MAX_TOKENS": 160,  # longest rationale
    "TEST_QUESTIONS": 30,  # held-back GSM8K test questions for every evaluation
    "TRAIN_STEPS": 8,  # optimiser steps per LoRA adapter (and for the ranker)
    "BATCH_TOKENS": 1024,  # tokens per optimiser step
    "EVAL_SAMPLES": 4,  # samples per question for self-consistency and ranked voting
    "EVAL_MAX_TOKENS": 160,  # longest answer at evaluation
}


def size(name: str) -> int:
    return int(os.environ.get(name, SIZES[name]))


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} CPUs)"


class Stages:
    """Runs commands, times each named stage, keeps the record for summary.json."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss: dict[str, int] = {}
        self.env = dict(os.environ, CURATOR_CACHE=str(OUT / "cache"))

    def run(self, stage: str, *args: str | Path) -> str:
        command = ["curator", *map(str, args)]
        print(f"\n[{stage}] $ {shlex.join(command)}", flush=True)
        started = time.perf_counter()
        process = subprocess.Popen(command, env=self.env, cwd=HERE, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)  # this command's own peak RSS (ru_maxrss, KiB on Linux)
        process.returncode = os.waitstatus_to_exitcode(status)
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started
        self.peak_rss[stage] = max(self.peak_rss.get(stage, 0), usage.ru_maxrss * 1024)
        print(out.strip(), flush=True)
        if process.returncode != 0:
            sys.exit(f"stage {stage} failed with exit code {process.returncode}")
        return out


def model_folder() -> str:
    named = os.environ.get("MODEL")
    if named:
        return named
    folder = HERE / "model"
    subprocess.run([sys.executable, "-m", "curator.testing.smollm2", str(folder)], check=True)
    return str(folder)


def head(source: Path, target: Path, lines: int) -> Path:
    target.write_text("".join(source.read_text().splitlines(keepends=True)[:lines]))
    return target


def merge_candidates(parts: dict[str, Path], target: Path) -> Path:
    """One candidate set from the two prompt styles, each question's rows together (a build needs groups)."""
    tables = []
    for style, path in parts.items():
        table = pq.read_table(path)
        tables.append(table.append_column("prompt_style", pa.array([style] * table.num_rows)))
    merged = pa.concat_tables(tables, promote_options="default")
    order = pc.sort_indices(merged, sort_keys=[("id", "ascending"), ("prompt_style", "ascending"), ("sample", "ascending")])
    merged = merged.take(order)
    ids = merged["id"].to_pylist()
    sample = [0] * len(ids)
    for i in range(1, len(ids)):
        sample[i] = sample[i - 1] + 1 if ids[i] == ids[i - 1] else 0
    merged = merged.set_column(merged.schema.get_field_index("sample"), "sample", pa.array(sample, pa.int32()))
    pq.write_table(merged, target)
    return target


def recipes(model: str) -> dict[str, dict]:
    """The four recipes of the comparison, plus the labelled build the ranker trains on."""
    common = {"input": str(OUT / "candidates.parquet"), "task": "gsm8k"}
    return {
        "lmsi": {**common, "filters": [{"majority_vote": {}}]},
        "iwsi": {**common, "filters": [
            {"majority_vote": {}},
            {"ds_weight": {"model": model, "valid": str(DATA / "valid.jsonl"), "keep_percent": 80}},
        ]},
        "entropy": {**common, "filters": [{"entropy": {"keep_percent": 50, "normalize": True}}]},
        "self_eval": {**common, "filters": [{"self_eval": {"model": model, "keep_percent": 50}}]},
        "labelled": {**common, "filters": [{"correctness": {}}]},
    }


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)  # every run measured from nothing: no resumed stage, no cached score
    OUT.mkdir()
    sizes = {name: size(name) for name in SIZES}
    started, load_before = time.perf_counter(), uptime()
    print(f"sizes: {sizes}\n{load_before}")
    model = model_folder()
    stages = Stages()
    train = head(DATA / "train.jsonl", OUT / "train.jsonl", sizes["QUESTIONS"])
    test = head(DATA / "test.jsonl", OUT / "test.jsonl", sizes["TEST_QUESTIONS"])

    generate = ["--input", train, "--task", "gsm8k", "--backend", "transformers", "--model", model,
                "--prompt", "few-shot-cot", "--n", sizes["SAMPLES"], "--temperature", "0.7",
                "--max-tokens", sizes["MAX_TOKENS"], "--seed", "0", "--no-progress"]
    stages.run("generate (completions)", "generate", *generate, "--output", OUT / "gen-completions")
    stages.run("generate (chat)", "generate", *generate, "--chat", "--output", OUT / "gen-chat")
    merge_candidates({"completions": OUT / "gen-completions" / "candidates.parquet",
                      "chat": OUT / "gen-chat" / "candidates.parquet"}, OUT / "candidates.parquet")

    folder = OUT / "recipes"
    folder.mkdir(exist_ok=True)
    paths = {}
    for name, recipe in recipes(model).items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump({**recipe, "output": str(OUT / "build" / name)}, sort_keys=False))
        stages.run("build", "build", paths[name], "--no-progress")

    (OUT / "train.yaml").write_text(yaml.safe_dump(
        {"batch_tokens": sizes["BATCH_TOKENS"], "lr": 1e-3, "max_length": 320, "log_every": 1, "save_every": 0}
    ))
    compared = [paths[name] for name in ("lmsi", "iwsi", "entropy", "self_eval")]
    stages.run("compare --train-eval", "compare", *compared, "--output", OUT / "report", "--train-eval",
               "--model", model, "--eval-data", test, "--max-steps", sizes["TRAIN_STEPS"],
               "--train-config", OUT / "train.yaml", "--max-tokens", sizes["EVAL_MAX_TOKENS"], "--no-progress")
    evaluate = ["--data", test, "--task", "gsm8k", "--max-tokens", sizes["EVAL_MAX_TOKENS"], "--no-progress"]

    labelled = OUT / "build" / "labelled"
    ranker_rows = pa.concat_tables([pq.read_table(labelled / "curated.parquet"), pq.read_table(labelled / "rejected.parquet")],
                                   promote_options="default")
    pq.write_table(ranker_rows, OUT / "ranker-data.parquet")
    stages.run("train ranker", "train", "--objective", "ranker", "--data", OUT / "ranker-data.parquet",
               "--model", model, "--output", OUT / "ranker", "--max-steps", sizes["TRAIN_STEPS"],
               "--batch-tokens", sizes["BATCH_TOKENS"], "--lr", "1e-3", "--max-length", "320", "--no-progress")
    adapter = OUT / "report" / "recipes" / "iwsi" / "adapter"
    for strategy in ("greedy", "self-consistency", "ranked"):
        extra = [] if strategy == "greedy" else ["--n", sizes["EVAL_SAMPLES"]]
        if strategy == "ranked":
            extra += ["--ranker", OUT / "ranker"]
        stages.run(f"eval iwsi ({strategy})", "eval", "--model", model, "--adapter", adapter, "--strategy", strategy,
                   *extra, *evaluate, "--output", OUT / "eval" / f"iwsi-{strategy}")

    summary = {
        "sizes": sizes,
        "model": model if model == HUB_NAME else f"{HUB_NAME} (local folder {model})",
        "load_before": load_before,
        "load_after": uptime(),
        "wall_seconds": {stage: round(s, 1) for stage, s in stages.seconds.items()},
        "peak_rss_gib": {stage: round(b / 2**30, 2) for stage, b in stages.peak_rss.items()},
        "total_seconds": round(time.perf_counter() - started, 1),
        "candidates": pq.read_table(OUT / "candidates.parquet").num_rows,
        "kept": {name: json.loads((OUT / "build" / name / "manifest.json").read_text())["rows_out"] for name in paths},
        "accuracy": figures(),
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def figures() -> dict[str, dict]:
    """Accuracy with its 95 % interval for every evaluation the run made."""
    found = {}
    trained = [OUT / "report" / "base-model" / "eval" / "metrics.json", OUT / "report" / "no-filter" / "eval" / "metrics.json",
               *sorted(OUT.glob("report/recipes/*/eval/metrics.json"))]
    for path in [p for p in trained if p.exists()] + sorted(OUT.glob("eval/*/metrics.json")):
        metrics = json.loads(path.read_text())
        if path.parent.name != "eval":
            name = path.parent.name
        elif path.parent.parent.name == "base-model":
            name = "base model (greedy)"
        else:
            name = path.parent.parent.name + " adapter (greedy)"
        found[name] = {k: metrics[k] for k in ("accuracy", "ci95", "correct", "questions", "no_answer")}
    return found


if __name__ == "__main__":
    main()
