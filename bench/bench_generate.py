"""Request throughput of ``curator generate``: default concurrency vs the same client one at a time.

The stub OpenAI server (:mod:`curator.testing.openai_server`) runs in its own
process, so it does not share the client's interpreter. For each server
latency (0 = it answers at once) the same few-shot generation runs twice in
this process: with the default concurrency, and with ``--concurrency 1``
(the same client used sequentially). Throughput is the manifest's requests
per second of wall time, start-up included; "in flight" is the time-weighted
mean number of requests at the server, seen by the client and by the server.

    python bench/bench_generate.py [--requests 3000] [--sequential 300] [--delays 0,0.05,0.2]

The sequential run is shortened at high latency (about ten seconds' worth
of requests, at least 50); requests per second do not depend on its length.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from curator.generate import GenerateConfig, run_generate

DEFAULT_CONCURRENCY = 256


def serve(delay: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "curator.testing.openai_server", "--delay", str(delay)],
        stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def server_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats") as answer:
        return json.loads(answer.read())


def write_questions(path: Path, count: int) -> Path:
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps({"id": f"q{i}", "question": f"Kai has {i} marbles and finds {i % 7} more. How many?"}))
            out.write("\n")
    return path


def generate(root: Path, name: str, questions: int, delay: float, concurrency: int) -> dict[str, Any]:
    """One fresh server, one ``curator generate`` run; the numbers that matter from both sides."""
    process, base_url = serve(delay)
    try:
        path = write_questions(root / f"{name}.jsonl", questions)
        config = GenerateConfig(
            input=str(path), output=str(root / name), task="gsm8k", backend="openai", model="stub",
            prompt="few-shot-cot", max_tokens=64, progress=False, base_url=base_url, concurrency=concurrency,
        )
        manifest = run_generate(config).manifest
        server = server_stats(base_url)
    finally:
        process.terminate()
        process.wait()
    return {
        "requests": manifest["usage"]["requests"],
        "seconds": manifest["wall_seconds"],
        "rps": manifest["requests_per_second"],
        "in_flight_client": manifest["in_flight"]["mean"],
        "in_flight_server": round(server["mean_in_flight"], 1),
        "peak_in_flight": manifest["in_flight"]["peak"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="questions (= requests) for the concurrent run")
    parser.add_argument("--sequential", type=int, default=300, help="questions for the sequential run")
    parser.add_argument("--delays", default="0,0.05,0.2", help="server latencies to measure, in seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        root = Path(tmp)
        generate(root, "warm-up", 50, 0.0, DEFAULT_CONCURRENCY)  # imports and first connections
        print("| server latency | concurrency | requests | seconds | requests/s | mean in flight (client / server) "
              "| peak | speed-up |")
        print("|---|---|---|---|---|---|---|---|")
        for delay in (float(d) for d in args.delays.split(",")):
            count = args.sequential if delay == 0 else min(args.sequential, max(50, int(10 / delay)))
            sequential = generate(root, f"seq-{delay}", count, delay, 1)
            concurrent = generate(root, f"conc-{delay}", args.requests, delay, DEFAULT_CONCURRENCY)
            for label, run in (("1 (sequential)", sequential), (f"{DEFAULT_CONCURRENCY} (default)", concurrent)):
                ratio = run["rps"] / sequential["rps"]
                print(f"| {delay * 1000:.0f} ms | {label} | {run['requests']} | {run['seconds']:.2f} | {run['rps']:.0f} "
                      f"| {run['in_flight_client']:.1f} / {run['in_flight_server']:.1f} | {run['peak_in_flight']} "
                      f"| {ratio:.1f}× |")


if __name__ == "__main__":
    main()
