"""Peak memory of reading JSONL, and of a whole build from it, at two sizes; Parquet as the baseline.

The same synthetic candidates (4 per question, GSM8K-like text) are written
as JSONL and as Parquet at ``--small`` and ``--big`` rows. Each measurement
runs in a fresh process and reports its peak RSS (VmHWM): reading the file
through :class:`curator.io.Source` batch by batch, and ``curator build``
with a model-free recipe (majority_vote) into a fresh cache. Printed: MB,
seconds, the big/small ratio of each (memory that does not grow with the
input gives about 1.0) and JSONL against Parquet at the same size.

    python bench/bench_jsonl_memory.py [--small 200000] [--big 2000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

READ = """
import sys
from curator.io import Source
rows = sum(b.num_rows for b in Source.open(sys.argv[1]).iter_batches(16384))
print(rows)
"""

BUILD = """
import sys
from curator.cli import main
try:
    main(["build", sys.argv[1], "--no-progress"])
except SystemExit as exc:
    if exc.code:
        raise
"""

PEAK = "\nprint([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"


def write_candidates(path: Path, rows: int) -> Path:
    template = (b'{"id": "q%d", "question": "Janet has %d apples and buys %d more. How many apples does she have?",'
                b' "rationale": "Janet starts with %d apples. She buys %d more, so %d + %d = %d. The answer is %d.",'
                b' "reference": "%d", "sample": %d}\n')
    with open(path, "wb") as handle:
        for lo in range(0, rows, 50_000):
            lines = []
            for i in range(lo, min(rows, lo + 50_000)):
                q, a, b = i // 4, i % 97, (i // 4) % 89
                answer = a + b + (i % 4 == 3)  # one sample in four disagrees
                lines.append(template % (q, a, b, a, b, a, b, answer, answer, a + b, i % 4))
            handle.write(b"".join(lines))
    return path


def to_parquet(source: Path, dest: Path) -> Path:
    from curator.io import Source

    writer = None
    for batch in Source.open(source).iter_batches(65536):
        writer = writer or pq.ParquetWriter(dest, batch.schema)
        writer.write_batch(batch)
    assert writer is not None
    writer.close()
    return dest


def measure(script: str, *args: str) -> tuple[float, float]:
    """Peak RSS in MB and wall seconds of ``script`` run in a fresh interpreter."""
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", script + PEAK, *args], capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(run.stderr)
    return int(run.stdout.split()[-1]) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200_000)
    parser.add_argument("--big", type=int, default=2_000_000)
    args = parser.parse_args()
    results: dict[tuple[str, str, int], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-jsonl-") as tmp:
        work = Path(tmp)
        for rows in (args.small, args.big):
            jsonl = write_candidates(work / f"c{rows}.jsonl", rows)
            files = {"jsonl": jsonl, "parquet": to_parquet(jsonl, work / f"c{rows}.parquet")}
            for fmt, path in files.items():
                results[("read", fmt, rows)] = measure(READ, str(path))
                recipe = work / f"r-{fmt}-{rows}.yaml"
                recipe.write_text(json.dumps({"input": str(path), "task": "gsm8k", "filters": ["majority_vote"],
                                              "output": str(work / f"out-{fmt}-{rows}"),
                                              "cache": str(work / f"cache-{fmt}-{rows}")}))
                results[("build", fmt, rows)] = measure(BUILD, str(recipe))
            jsonl.unlink()
            files["parquet"].unlink()
    print(f"{'what':<8}{'format':<9}{'rows':>10}{'peak MB':>10}{'seconds':>9}")
    for (what, fmt, rows), (peak, seconds) in results.items():
        print(f"{what:<8}{fmt:<9}{rows:>10,}{peak:>10.0f}{seconds:>9.1f}")
    for what in ("read", "build"):
        for fmt in ("jsonl", "parquet"):
            ratio = results[(what, fmt, args.big)][0] / results[(what, fmt, args.small)][0]
            print(f"{what} {fmt}: peak at {args.big:,} rows / at {args.small:,} rows = {ratio:.2f}")
        vs = results[(what, "jsonl", args.big)][0] / results[(what, "parquet", args.big)][0]
        print(f"{what} at {args.big:,} rows: JSONL peak / Parquet peak = {vs:.2f}")


if __name__ == "__main__":
    main()
