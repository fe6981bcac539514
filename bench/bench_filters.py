"""Model-free curation throughput and memory: curator vs polars, duckdb (and HF ``datasets``), same data, same run.

Synthetic candidates (4-16 per question, rationales drawn from the real GPT-3
GSM8K solutions shipped in examples/, final answers varied per group) go
through answer parsing + correctness + majority_vote + entropy, Parquet in,
curated and rejected Parquet out: with ``curator build`` (fresh cache) and
with each peer written as well as we could (``filter_peers``; install them
with ``pip install -e '.[bench]'``). Each run is a fresh process; the tools
take turns in an order where each is measured once right after each tool,
itself included (:func:`balanced_order`), ``--repeat`` rounds of that, and medians are reported with curator's
speed-up over each (median of the paired ratios), the check that each peer
wrote the same split (every column of every row), and the share of the
build's time spent on what makes it resumable (see
:mod:`curator.build.phases`). Then peak RSS of a build at 1M and 4M rows,
each in a fresh process.

With ``--executor ray``: the same build on the same rows with the local
executor and with the Ray executor (a local Ray started inside a fresh
network namespace, see :mod:`curator.testing.ray_sandbox`), each in a fresh
process: rows/s, Ray's start-up, and peak memory (PSS summed over the
process tree, sampled, so Ray's servers and workers count), and the ratios.

    python bench/bench_filters.py [--rows 1000000] [--big-rows 4000000] [--repeat 3] [--peers polars,duckdb,datasets]
    python bench/bench_filters.py --executor ray [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
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


def run_curator(path: Path, work: Path, executor: str = "local") -> dict:
    """One build in this process (fresh cache): seconds end to end, CPU seconds, rows kept, the build's phases."""
    from curator.build import parse_recipe, run_build

    recipe = parse_recipe({"input": str(path), "task": "gsm8k", "filters": RECIPE, "output": str(work / "out"),
                           "cache": str(work / "cache"), "executor": executor}, base_dir=work)
    started, cpu = time.perf_counter(), time.process_time()
    result = run_build(recipe, progress=False)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "kept": result.manifest["rows_out"],
            "phases": result.manifest.get("phases", {})}


def peak_rss_of_build(path: Path) -> float:
    """Peak RSS (MiB) of a fresh process that runs the build.

    Read from ``VmHWM``: ``ru_maxrss`` survives fork and exec on Linux, so a
    child started by this (large) process would report the parent's peak.
    """
    here = str(Path(__file__).parent)
    code = (f"import sys, tempfile, pathlib; sys.path.insert(0, {here!r}); import bench_filters as b; "
            f"w = tempfile.TemporaryDirectory(); b.run_curator(pathlib.Path({str(path)!r}), pathlib.Path(w.name)); "
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024); "
            "w.cleanup()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


PEERS = {"polars": "run_polars", "duckdb": "run_duckdb", "datasets": "run_datasets"}
TARGETS = {"polars": 1.2}
"""curator build's speed over each peer's that the issue sets as a target."""


def timed_tool(tool: str, data: Path, out: Path) -> dict:
    """Run one tool in this (fresh) process: seconds end to end, CPU seconds, rows kept, the build's phases."""
    if tool == "curator":
        return run_curator(data, out)
    import filter_peers

    run = getattr(filter_peers, PEERS[tool])
    if tool == "polars":
        import polars  # noqa: F401  (imported before the clock starts, as curator's modules are)
    elif tool == "duckdb":
        import duckdb  # noqa: F401
    started, cpu = time.perf_counter(), time.process_time()
    kept = run(data, out)
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu, "kept": kept}


def run_child(tool: str, data: Path, out: Path) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child-tool", tool, "--data", str(data), "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{tool} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def differences(ours: Path, theirs: Path) -> dict[str, int]:
    """Values that differ, per output file and column (row counts first); empty when the split is the same."""
    found: dict[str, int] = {}
    for name in ("curated", "rejected"):
        mine, peer = pq.read_table(ours / f"{name}.parquet"), pq.read_table(theirs / f"{name}.parquet")
        if mine.num_rows != peer.num_rows or mine.schema.names != peer.schema.names:
            found[f"{name}: rows or columns"] = abs(mine.num_rows - peer.num_rows) or 1
            continue
        for column in mine.schema.names:
            a = mine.column(column).combine_chunks()
            b = peer.column(column).cast(a.type).combine_chunks()
            same = pc.or_(pc.fill_null(pc.equal(a, b), False), pc.and_(pc.is_null(a), pc.is_null(b)))
            count = len(a) - pc.sum(same.cast(pa.int64())).as_py() if len(a) else 0
            if count:
                found[f"{name}.{column}"] = count
    return found


def balanced_order(count: int) -> list[int]:
    """Tool numbers in an order where every ordered pair (a, b), ``a == b`` too, follows once: a de Bruijn sequence.

    A run is slowed by the one before it (what the memory another process just freed costs to hand out
    again, on this VM up to 0.9 s of kernel time, see ``bench/RESULTS.md``), so each tool is measured once
    after each tool. Built by always taking the highest tool not yet run after the last one, which covers
    every pair; the order ends with the tool it starts with.
    """
    order, used = [0], set()
    while (after := next((b for b in reversed(range(count)) if (order[-1], b) not in used), None)) is not None:
        used.add((order[-1], after))
        order.append(after)
    assert len(used) == count * count and order[-1] == order[0]
    return order


def compare_speed(data: Path, rows: int, work: Path, peers: list[str], repeat: int) -> None:
    """Each tool in a fresh process, ``repeat`` rounds of :func:`balanced_order`; medians, ratios and the equality check."""
    from curator.build.phases import RESUME

    runs: dict[str, list[dict]] = {tool: [] for tool in ["curator", *peers]}
    checked: dict[str, dict[str, int]] = {}
    tools = list(runs)
    order = balanced_order(len(tools))
    reference = work / "curator-first"  # a curator build (the order starts with it), which the first measured
    run_child("curator", data, reference)  # run follows; not counted: each peer's split is checked against it
    for rep in range(repeat):
        for number, tool in enumerate(tools[i] for i in order[1:]):
            out = work / f"{tool}-{rep}-{number}"
            runs[tool].append(run_child(tool, data, out))
            if tool != "curator" and tool not in checked:
                checked[tool] = ({} if tool == "datasets" else differences(reference / "out", out))
            shutil.rmtree(out, ignore_errors=True)
        print(f"round {rep + 1}: " + ", ".join(f"{t} " + " / ".join(f"{r['seconds']:.1f}" for r in results[-len(tools):])
                                              + " s" for t, results in runs.items()), flush=True)
    shutil.rmtree(reference, ignore_errors=True)
    ours = runs["curator"]
    print(f"rows: {rows:,}; {repeat} rounds, each tool measured in a fresh process once after each tool; medians")
    print(f"{'tool':14} {'rows/s':>9} {'seconds':>8} {'cpu s':>6} {'kept':>8}  curator ÷ tool")
    for tool, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        cpu = statistics.median(r["cpu"] for r in results)
        ratio = "" if tool == "curator" else f"{statistics.median(t['seconds'] / o['seconds'] for t, o in zip(results, ours)):.2f}x"
        target = f" (target >= {TARGETS[tool]}x)" if tool in TARGETS else ""
        print(f"{tool:14} {rows / seconds:9,.0f} {seconds:8.2f} {cpu:6.2f} {results[0]['kept']:8}  {ratio}{target}")
    for tool, found in checked.items():
        if tool == "datasets":
            same = runs[tool][0]["kept"] == ours[0]["kept"]
            print(f"datasets: curated rows only, {'the same count' if same else 'A DIFFERENT COUNT'} of rows kept")
        elif found:
            print(f"{tool}: DIFFERENT from curator build: {found}")
        else:
            print(f"{tool}: the same split as curator build: 0 differences in every column on all {rows:,} rows")
    for kind, label in (("wall", "wall s of the build's thread"), ("cpu", "CPU s of every thread")):
        medians = {n: statistics.median(r["phases"][kind].get(n, 0.0) for r in ours) for n in ours[0]["phases"][kind]}
        print(f"curator build phases ({label}, median): " + ", ".join(f"{n} {v:.2f}" for n, v in medians.items()))
    wall = statistics.median(sum(r["phases"]["wall"].get(n, 0.0) for n in RESUME) / r["seconds"] for r in ours)
    cpu = statistics.median(sum(r["phases"]["cpu"].get(n, 0.0) for n in RESUME) / r["cpu"] for r in ours)
    print(f"resumability ({', '.join(RESUME)}): {wall:.1%} of the build's wall time (its own thread's waits), "
          f"{cpu:.1%} of the process's CPU time (every thread) (target < 15%)")


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
    built = run_curator(path, work, executor)
    peak[0] = max(peak[0], tree_pss_mib(os.getpid()))
    done.set()
    if executor == "ray":
        ray.shutdown()
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    return {"seconds": built["seconds"], "start_up": start_up, "kept": built["kept"], "pss_peak": peak[0],
            "driver_hwm": hwm}


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
    parser.add_argument("--peers", default="polars,duckdb",
                        help="comma-separated, from: " + ", ".join(PEERS) + " (datasets: ~10x slower)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds, each measuring every tool once after each tool (medians are reported)")
    parser.add_argument("--child", choices=["local", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--child-tool", choices=["curator", *PEERS], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measured_build(args.data, args.child)))
        return
    if args.child_tool:
        print(json.dumps(timed_tool(args.child_tool, args.data, args.out)))
        return
    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "candidates.parquet"
        write_candidates(data, args.rows)
        rows = pq.read_metadata(data).num_rows
        if args.executor == "ray":
            compare_executors(data, rows)
            return
        if not args.skip_speed:
            compare_speed(data, rows, work, peers, args.repeat)
        if args.skip_memory:
            return
        big = work / "big.parquet"
        write_candidates(big, args.big_rows, seed=1)
        small_rss, big_rss = peak_rss_of_build(data), peak_rss_of_build(big)
        print(f"peak RSS      : {small_rss:.0f} MiB at {rows:,} rows, {big_rss:.0f} MiB at "
              f"{pq.read_metadata(big).num_rows:,} rows: ratio {big_rss / small_rss:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
