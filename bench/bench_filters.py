"""Model-free curation throughput and memory: curator vs HF ``datasets``, same data, same run.

Synthetic candidates (4-16 per question, rationales drawn from the real GPT-3
GSM8K solutions shipped in examples/, final answers varied per group) go
through answer parsing + correctness + majority_vote + entropy, once with
``curator build`` and once written the obvious good way with ``datasets``
(batched ``map``/``filter``, per-row parsing with the same task). Then peak
RSS of a build at 1M and 4M rows, each in a fresh process.

With ``--executor ray``: the same build on the same rows with the local
executor and with the Ray executor (a local Ray started inside a fresh
network namespace, see :mod:`curator.testing.ray_sandbox`), each in a fresh
process: rows/s, Ray's start-up, and peak memory (PSS summed over the
process tree, sampled, so Ray's servers and workers count), and the ratios.

    python bench/bench_filters.py [--rows 1000000] [--big-rows 4000000]
    python bench/bench_filters.py --executor ray [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "gsm8k" / "candidates.jsonl"


def write_candidates(path: Path, rows: int, seed: int = 0) -> None:
    """Stream synthetic GSM8K-like candidates to Parquet without holding them all."""
    rng = np.random.default_rng(seed)
    pool = [json.loads(line)["rationale"].rsplit("\nA:", 1)[0] for line in EXAMPLE.open()]
    pool_array = pa.array(pool)
    schema = pa.schema([("id", pa.string()), ("question", pa.string()), ("rationale", pa.string()),
                        ("reference", pa.string()), ("sample", pa.int32())])
    written, group = 0, 0
    with pq.ParquetWriter(path, schema) as writer:
        while written < rows:
            sizes = rng.integers(4, 17, 20000)
            sizes = sizes[: np.searchsorted(np.cumsum(sizes), rows - written, side="right") + 1]
            n = int(sizes.sum())
            gids = np.repeat(np.arange(group, group + len(sizes)), sizes)
            sample = np.concatenate([np.arange(s) for s in sizes]).astype(np.int32)
            truth = rng.integers(1, 500, len(sizes))
            noise = rng.random(n)
            answer = np.where(noise < 0.6, truth[gids - group], rng.integers(1, 500, n))
            text = pc.binary_join_element_wise(
                pool_array.take(pa.array(rng.integers(0, len(pool), n))),
                pa.array([f"\nA: {a}" for a in answer]), "")
            ids = pa.array([f"q{g}" for g in gids])
            writer.write_table(pa.table({
                "id": ids, "question": pc.binary_join_element_wise(pa.scalar("Question "), ids, ""),
                "rationale": text, "reference": pa.array(truth[gids - group].astype(str)), "sample": sample,
            }, schema=schema))
            written += n
            group += len(sizes)


RECIPE = ["correctness", "majority_vote", {"entropy": {"threshold": 0.7}}]


def run_curator(path: Path, work: Path, executor: str = "local") -> tuple[float, int]:
    from curator.build import parse_recipe, run_build

    recipe = parse_recipe({"input": str(path), "task": "gsm8k", "filters": RECIPE, "output": str(work / "out"),
                           "cache": str(work / "cache"), "executor": executor}, base_dir=work)
    started = time.perf_counter()
    result = run_build(recipe, progress=False)
    return time.perf_counter() - started, result.manifest["rows_out"]


def run_datasets(path: Path, work: Path) -> tuple[float, int]:
    import datasets

    from curator.plugins import get_registry

    datasets.disable_progress_bars()
    task = get_registry().task("gsm8k")
    started = time.perf_counter()
    ds = datasets.Dataset.from_parquet(str(path), cache_dir=str(work / "hf"))
    ds = ds.map(lambda b: {"answer": [task.extract(t) for t in b["rationale"]],
                           "reference": [task.normalize_reference(r) for r in b["reference"]]}, batched=True)
    ds = ds.map(lambda b: {"correct": [task.equal(a, r) for a, r in zip(b["answer"], b["reference"])]}, batched=True)
    ds = ds.filter(lambda b: b["correct"], batched=True)
    by_id: dict[str, Counter] = {}
    for batch in ds.select_columns(["id", "answer"]).iter(batch_size=65536):
        for i, a in zip(batch["id"], batch["answer"]):
            if a is not None:
                by_id.setdefault(i, Counter())[a] += 1
    vote = {i: c.most_common(1)[0][0] for i, c in by_id.items()}
    entropy = {i: -sum(n / sum(c.values()) * math.log(n / sum(c.values())) for n in c.values())
               for i, c in by_id.items()}
    ds = ds.map(lambda b: {"vote_answer": [vote.get(i) for i in b["id"]],
                           "answer_entropy": [entropy.get(i) for i in b["id"]]}, batched=True)
    ds = ds.filter(lambda b: [a == v for a, v in zip(b["answer"], b["vote_answer"])], batched=True)
    ds = ds.filter(lambda b: [h is not None and h < 0.7 for h in b["answer_entropy"]], batched=True)
    ds.to_parquet(str(work / "hf_curated.parquet"))
    return time.perf_counter() - started, ds.num_rows


def peak_rss_of_build(path: Path) -> float:
    """Peak RSS (MiB) of a fresh process that runs the build.

    Read from ``VmHWM``: ``ru_maxrss`` survives fork and exec on Linux, so a
    child started by this (large) process would report the parent's peak.
    """
    here = str(Path(__file__).parent)
    code = (f"import sys, tempfile, pathlib; sys.path.insert(0, {here!r}); import bench_filters as b; "
            f"w = pathlib.Path(tempfile.mkdtemp()); b.run_curator(pathlib.Path({str(path)!r}), w); "
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def compare_speed(data: Path, rows: int, work: Path) -> None:
    ours, kept = run_curator(data, work / "curator")
    theirs, kept_hf = run_datasets(data, work / "datasets")
    print(f"rows: {rows}")
    print(f"curator build : {rows / ours:,.0f} rows/s ({ours:.1f} s, {kept} kept)")
    print(f"HF datasets   : {rows / theirs:,.0f} rows/s ({theirs:.1f} s, {kept_hf} kept)")
    print(f"speed-up      : {theirs / ours:.2f}x (target >= 3x)")
    if kept != kept_hf:
        print(f"WARNING: kept rows differ ({kept} vs {kept_hf})")


def tree_pss_mib(root: int) -> float:
    """Proportional set size of ``root`` and its descendants (shared pages split, not counted twice)."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(status.parent.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return total / 1024


def measured_build(path: Path, executor: str) -> dict:
    """Run one build in this (fresh) process, sampling the process tree's PSS; the child side of compare_executors."""
    import os
    import threading

    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], tree_pss_mib(os.getpid()))

    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    if executor == "ray":
        import ray

        ray.init(include_dashboard=False, log_to_driver=False)
    start_up = time.perf_counter() - started
    work = Path(tempfile.mkdtemp())
    seconds, kept = run_curator(path, work, executor)
    peak[0] = max(peak[0], tree_pss_mib(os.getpid()))
    done.set()
    if executor == "ray":
        ray.shutdown()
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    return {"seconds": seconds, "start_up": start_up, "kept": kept, "pss_peak": peak[0], "driver_hwm": hwm}


def compare_executors(data: Path, rows: int) -> None:
    from curator.testing import ray_sandbox

    reason = ray_sandbox.unavailable()
    if reason:
        raise SystemExit(f"cannot run the Ray executor here: {reason}")
    here = str(Path(__file__).resolve())
    results = {}
    for executor in ("local", "ray"):
        argv = [here, "--child", executor, "--data", str(data)]
        run = (ray_sandbox.run_python(argv) if executor == "ray" else
               subprocess.run([sys.executable, *argv], capture_output=True, text=True))
        if run.returncode:
            raise SystemExit(run.stderr[-3000:])
        results[executor] = json.loads(run.stdout.strip().splitlines()[-1])
    local, ray = results["local"], results["ray"]
    print(f"rows: {rows}")
    for name, r in results.items():
        print(f"{name:5} executor: {rows / r['seconds']:,.0f} rows/s ({r['seconds']:.1f} s build, "
              f"{r['start_up']:.1f} s start-up, {r['kept']} kept); peak PSS of the process tree "
              f"{r['pss_peak']:.0f} MiB (driver VmHWM {r['driver_hwm']:.0f} MiB)")
    print(f"ray / local   : {local['seconds'] / ray['seconds']:.2f}x the rows/s "
          f"({(ray['seconds'] + ray['start_up']) / local['seconds']:.1f}x the time with Ray's start-up), "
          f"{ray['pss_peak'] / local['pss_peak']:.1f}x the memory")
    if local["kept"] != ray["kept"]:
        print(f"WARNING: kept rows differ ({local['kept']} vs {ray['kept']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=4_000_000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="ray: compare the two executors on the same rows instead of curator with datasets")
    parser.add_argument("--child", choices=["local", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measured_build(args.data, args.child)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "candidates.parquet"
        write_candidates(data, args.rows)
        rows = pq.read_metadata(data).num_rows
        if args.executor == "ray":
            compare_executors(data, rows)
            return
        if not args.skip_speed:
            compare_speed(data, rows, work)
        if args.skip_memory:
            return
        big = work / "big.parquet"
        write_candidates(big, args.big_rows, seed=1)
        small_rss, big_rss = peak_rss_of_build(data), peak_rss_of_build(big)
        print(f"peak RSS      : {small_rss:.0f} MiB at {rows:,} rows, {big_rss:.0f} MiB at "
              f"{pq.read_metadata(big).num_rows:,} rows: ratio {big_rss / small_rss:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
