"""Turning Dust into Gold (arXiv 2312.12832) end to end on the shipped GSM8K sample, offline.

The whole chain through the command line, on the 300 questions with four
real GPT-3 rationales each in ``examples/gsm8k/candidates.jsonl``: the first
240 questions to learn from, the last 60 held out for evaluation. The base
model is the gsm8k example's tiny reference LM (``examples/gsm8k/reference_lm.py``,
a Llama of a few hundred thousand parameters with grouped-query attention,
trained here on GSM8K human solutions in about a minute), so every step runs
on two CPU cores; its accuracies are near zero and only show that the
pipeline runs and what it writes.

1. ``curator build build.yaml``: correctness splits positives (curated) from
   negatives (``dropped_by: correctness``, also ``rejected-correctness.parquet``).
2. negative LoRA: ``curator train --data rejected.parquet --where dropped_by=correctness``.
3. NAT: ``curator train --objective nat --negative-adapter neg/`` on the positives.
4. CoT KD, the baseline NAT is compared with: plain LoRA on the positives, same settings.
5. ``curator build nce.yaml``: ``nce_kl`` weights the positives with NAT as P and
   the negative LoRA as N (``span: completion``), and again with ``span: all``
   (the released code's β) to measure how far the two disagree.
6. NCE: ``curator train --objective nce --teacher nat/`` on the weighted positives.
7. ASC ranker: ``curator train --objective ranker --data build/`` (curated and rejected).
8. ``curator eval`` on the held-out questions: greedy for the base, CoT KD,
   NAT and NCE; self-consistency and ranked (ASC) voting for NCE.

    python examples/dust-into-gold/run.py            # writes examples/dust-into-gold/work/
    python examples/dust-into-gold/run.py --fresh    # start over

Wall times and accuracies go to ``work/results.json``, ``work/results.md``
and ``work/accuracy.png``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GSM8K = HERE.parent / "gsm8k"
WORK = HERE / "work"
BASE = GSM8K / "reference-lm"
TRAIN_QUESTIONS = 240
SAMPLES = 8


TIMES: dict[str, tuple[float, float]] = {}
"""Step name -> (wall seconds, CPU seconds of the commands it ran)."""


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(name: str, *command: str) -> None:
    """Run one command line, as a user would, and record its wall and CPU time under ``name``."""
    started, cpu = time.perf_counter(), child_cpu()
    print("$ " + " ".join(command), flush=True)
    subprocess.run(list(command), check=True)
    TIMES[name] = (time.perf_counter() - started, child_cpu() - cpu)


def curator(name: str, *args: str) -> None:
    run(name, sys.executable, "-m", "curator", *args, "--no-progress")


def split() -> None:
    """Candidates of the first questions to learn from; the last questions, with references, held out."""
    rows = [json.loads(line) for line in (GSM8K / "candidates.jsonl").read_text().splitlines() if line]
    ids = list(dict.fromkeys(r["id"] for r in rows))
    train = set(ids[:TRAIN_QUESTIONS])
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / "train.jsonl", "w") as out:
        out.writelines(json.dumps(r) + "\n" for r in rows if r["id"] in train)
    held_out = {r["id"]: r for r in rows if r["id"] not in train}
    with open(WORK / "test.jsonl", "w") as out:
        out.writelines(
            json.dumps({"id": i, "question": r["question"], "reference": r["reference"]}) + "\n"
            for i, r in held_out.items()
        )


def train(name: str, output: str, *args: str) -> None:
    curator(
        name,
        "train",
        "--config",
        str(HERE / "train.yaml"),
        "--model",
        str(BASE),
        "--output",
        str(WORK / output),
        *args,
    )


def evaluate(name: str, output: str, *args: str) -> None:
    curator(
        name, "eval", "--model", str(BASE), "--data", str(WORK / "test.jsonl"), "--task", "gsm8k",
        "--max-tokens", "160", "--output", str(WORK / "eval" / output), *args,
    )  # fmt: skip


def beta_agreement() -> dict[str, float]:
    """How far the released β (span: all) is from the project's (span: completion) on the same rows."""
    import numpy as np
    import pyarrow.parquet as pq

    ours = pq.read_table(WORK / "nce" / "curated.parquet", columns=["nce_beta"])["nce_beta"].to_numpy()
    released = pq.read_table(WORK / "nce-all" / "curated.parquet", columns=["nce_beta"])[
        "nce_beta"
    ].to_numpy()

    def ranks(values: np.ndarray) -> np.ndarray:
        return np.argsort(np.argsort(values)).astype(float)

    return {
        "rows": int(len(ours)),
        "mean_beta_completion": float(ours.mean()),
        "mean_beta_all": float(released.mean()),
        "max_abs_difference": float(np.abs(ours - released).max()),
        "mean_abs_difference": float(np.abs(ours - released).mean()),
        "spearman": float(np.corrcoef(ranks(ours), ranks(released))[0, 1]),
    }


def report() -> None:
    order = ["base-greedy", "kd-greedy", "nat-greedy", "nce-greedy", "nce-sc", "nce-asc"]
    runs = {name: json.loads((WORK / "eval" / name / "metrics.json").read_text()) for name in order}
    results = {
        "seconds": {k: {"wall": round(w, 1), "cpu": round(c, 1)} for k, (w, c) in TIMES.items()},
        "accuracy": {
            n: {
                "accuracy": m["accuracy"],
                "ci95": m["ci95"],
                "correct": m["correct"],
                "questions": m["questions"],
                "strategy": m["config"]["strategy"],
            }
            for n, m in runs.items()
        },  # fmt: skip
        "training": {
            name: {
                "steps": m["steps"],
                "final_loss": m["final_loss"],
                "trainable_parameters": m["model"]["trainable_parameters"],
            }
            for name in ("neg", "nat", "kd", "nce", "ranker")
            for m in [json.loads((WORK / name / "manifest.json").read_text())]
        },  # fmt: skip
        "nce_beta": beta_agreement(),
    }
    (WORK / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| run | strategy | accuracy (95% CI) | correct / questions |", "|---|---|---|---|"]
    for name, m in results["accuracy"].items():
        low, high = m["ci95"]
        lines.append(f"| {name} | {m['strategy']} | {m['accuracy']:.3f} [{low:.3f}, {high:.3f}] | "
                     f"{m['correct']} / {m['questions']} |")  # fmt: skip
    lines += ["", "| step | wall time (s) | CPU time (s) |", "|---|---|---|"]
    lines += [f"| {k} | {v['wall']} | {v['cpu']} |" for k, v in results["seconds"].items()]
    lines += ["", "| training run | steps | final loss | trainable parameters |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['steps']} | {v['final_loss']:.4f} | {v['trainable_parameters']:,} |"
              for k, v in results["training"].items()]  # fmt: skip
    lines += ["", "nce_beta, span completion vs span all: " + json.dumps(results["nce_beta"])]
    (WORK / "results.md").write_text("\n".join(lines) + "\n")
    plot(results["accuracy"])
    print("\n".join(lines))


def plot(accuracy: dict[str, dict]) -> None:
    """Accuracy with its 95% Wilson interval per run, as ``curator compare --train-eval`` tabulates it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(accuracy)
    values = [accuracy[n]["accuracy"] for n in names]
    errors = [[v - accuracy[n]["ci95"][0] for n, v in zip(names, values)],
              [accuracy[n]["ci95"][1] - v for n, v in zip(names, values)]]  # fmt: skip
    figure = Figure(figsize=(6.4, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.bar(names, values, yerr=errors, capsize=4, color="#2a9d8f")
    axes.set_ylabel(f"accuracy on {accuracy[names[0]]['questions']} held-out questions")
    axes.set_ylim(0, max(0.1, max(accuracy[n]["ci95"][1] for n in names) * 1.1))
    axes.tick_params(axis="x", labelrotation=20)
    figure.savefig(WORK / "accuracy.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="delete work/ first")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(WORK, ignore_errors=True)
    if WORK.exists():
        sys.exit(f"{WORK} exists: its runs would be resumed, not redone (use --fresh)")
    started, cpu = time.perf_counter(), child_cpu()
    run("reference LM (once; shared with examples/gsm8k)", sys.executable, str(GSM8K / "reference_lm.py"))
    split()
    build = WORK / "build"
    curator("build: correctness", "build", str(HERE / "build.yaml"))
    train(
        "train: negative LoRA",
        "neg",
        "--data",
        str(build / "rejected.parquet"),
        "--where",
        "dropped_by=correctness",
    )
    train("train: NAT", "nat", "--objective", "nat", "--negative-adapter", str(WORK / "neg"),
          "--data", str(build / "curated.parquet"))  # fmt: skip
    train("train: CoT KD (plain LoRA)", "kd", "--data", str(build / "curated.parquet"))
    curator("build: nce_kl", "build", str(HERE / "nce.yaml"))
    curator("build: nce_kl, span all", "build", str(HERE / "nce.yaml"), "--set", "filters.1.nce_kl.span=all",
            "--output", str(WORK / "nce-all"))  # fmt: skip
    train("train: NCE", "nce", "--objective", "nce", "--teacher", str(WORK / "nat"),
          "--data", str(WORK / "nce" / "curated.parquet"))  # fmt: skip
    train("train: ASC ranker", "ranker", "--objective", "ranker", "--data", str(build))
    for name in ("base", "kd", "nat", "nce"):
        adapter = [] if name == "base" else ["--adapter", str(WORK / name)]
        evaluate(f"eval: {name}, greedy", f"{name}-greedy", "--strategy", "greedy", *adapter)
    sampled = ["--n", str(SAMPLES), "--temperature", "0.7", "--adapter", str(WORK / "nce")]
    evaluate("eval: nce, self-consistency", "nce-sc", "--strategy", "self-consistency", *sampled)
    evaluate(
        "eval: nce, ranked (ASC)",
        "nce-asc",
        "--strategy",
        "ranked",
        "--ranker",
        str(WORK / "ranker"),
        *sampled,
    )
    TIMES["total"] = (time.perf_counter() - started, child_cpu() - cpu)
    report()


if __name__ == "__main__":
    main()
