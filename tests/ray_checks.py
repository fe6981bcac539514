"""The Ray executor's checks, run by ``test_build_ray.py`` in one process inside a network namespace.

One Ray start serves every check (it takes seconds and hundreds of MiB):
outputs equal the local executor's on the shipped example (with a
model-backed step) and on 200k rows with uneven groups; the score cache is
shared by both executors and by any ``batch_rows``; a driver killed with
``kill -9`` mid-build resumes; a filter's error reaches the user as one
line; and ``curator build --executor ray --ray-address`` joins a cluster.

    python tests/ray_checks.py CONFIG.json RESULT.json
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.json as pajson
import pyarrow.parquet as pq

TESTS = Path(__file__).resolve().parent
EXAMPLE = TESTS.parent / "examples" / "gsm8k"
sys.path.insert(0, str(TESTS))

import helpers_build  # noqa: E402

from curator import CuratorError  # noqa: E402
from curator.build import load_recipe, parse_recipe, run_build  # noqa: E402

UNEVEN = ["correctness", "majority_vote", {"rationale_length": {"keep_percent": 70}},
          {"entropy": {"keep_percent": 60}}]


def uneven_candidates(path: Path, rows: int = 200_000, seed: int = 0) -> None:
    """Groups of 1-8 rows, some of 30-60 and a few of 300-600."""
    rng = np.random.default_rng(seed)
    kind = rng.random(rows)
    sizes = np.where(kind < 0.002, rng.integers(300, 601, rows),
                     np.where(kind < 0.05, rng.integers(30, 61, rows), rng.integers(1, 9, rows)))
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), rows) + 1]
    sizes[-1] -= sizes.sum() - rows
    group = np.repeat(np.arange(len(sizes)), sizes)
    ids = pc.binary_join_element_wise("q", pc.cast(pa.array(group), pa.string()), "")
    answers = pc.cast(pa.array(np.where(rng.random(rows) < 0.6, group % 7, rng.integers(0, 7, rows))), pa.string())
    steps = pa.array(np.array([" step" * n for n in range(30)], dtype=object)[rng.integers(0, 30, rows)])
    pq.write_table(pa.table({
        "id": ids,
        "question": pc.binary_join_element_wise("Question ", ids, "?", ""),
        "rationale": pc.binary_join_element_wise("Some reasoning", steps, ". The answer is ", answers, ".", ""),
        "reference": pc.cast(pa.array(group % 7), pa.string()),
        "sample": pa.array(np.concatenate([np.arange(s) for s in sizes]).astype(np.int32)),
    }), path)


def build(work: Path, name: str, filters, executor: str, *, cache: str, data: Path, **extra):
    recipe = parse_recipe({"input": str(data), "task": "gsm8k", "filters": filters, "output": str(work / name),
                           "cache": str(work / cache), "executor": executor, **extra}, base_dir=work)
    return run_build(recipe, registry=helpers_build.engine_registry(), progress=False)


def same_outputs(a: Path, b: Path) -> bool:
    return all(pq.read_table(a / f"{n}.parquet").equals(pq.read_table(b / f"{n}.parquet"))
               for n in ("curated", "rejected"))


def scored(manifest: dict) -> list[int]:
    return [s["rows_scored"] for s in manifest["steps"]]


def main() -> None:
    import ray
    import torch

    config = json.loads(Path(sys.argv[1]).read_text())
    work = Path(config["work"])
    torch.set_num_threads(1)  # as in Ray's workers, so model scores match bit for bit
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    result: dict = {"ray_start_seconds": round(time.perf_counter() - started, 2)}
    address = ray.get_runtime_context().gcs_address
    checks = [("example", lambda: example(work, config["tiny_llama"])), ("uneven", lambda: uneven(work)),
              ("killed", lambda: killed(work, address)), ("errors", lambda: errors(work)),
              ("command_line", lambda: command_line(work, address))]
    try:
        for name, check in checks:
            started = time.perf_counter()
            result |= check()
            result[f"{name}_check_seconds"] = round(time.perf_counter() - started, 2)
    finally:
        ray.shutdown()
    Path(sys.argv[2]).write_text(json.dumps(result, default=str))


def example(work: Path, model: str) -> dict:
    """The shipped IWSI recipe, its reference LM replaced by a tiny model: both executors alike."""
    outs = {}
    for executor in ("local", "ray"):
        overrides = [f"filters.1.ds_weight.model={model}", "filters.1.ds_weight.max_length=64",
                     "filters.1.ds_weight.valid_limit=8", f"output={work / ('example-' + executor)}",
                     f"cache={work / ('example-cache-' + executor)}", f"executor={executor}"]
        outs[executor] = run_build(load_recipe(EXAMPLE / "recipe.yaml", overrides), progress=False).manifest
    ray_manifest = outs["ray"]
    return {
        "example_equal": same_outputs(work / "example-local", work / "example-ray"),
        "example_rows": [[s["rows_in"], s["rows_kept"]] for s in ray_manifest["steps"]],
        "example_local_rows": [[s["rows_in"], s["rows_kept"]] for s in outs["local"]["steps"]],
        "example_executor": ray_manifest["executor"],
        "example_facts": [ray_manifest["steps"][1]["facts"], outs["local"]["steps"][1]["facts"]],
        "example_seconds": ray_manifest["steps"][1]["seconds"],
    }


def uneven(work: Path) -> dict:
    data = work / "uneven.parquet"
    uneven_candidates(data)
    timings = {}
    for executor in ("local", "ray"):
        started = time.perf_counter()
        build(work, f"uneven-{executor}", UNEVEN, executor, cache=f"uneven-cache-{executor}", data=data)
        timings[executor] = round(time.perf_counter() - started, 2)
    ray_manifest = json.loads((work / "uneven-ray" / "manifest.json").read_text())
    # The score cache Ray filled serves the local executor, with another batch size, re-scoring nothing.
    local_again = build(work, "uneven-local-from-ray-cache", UNEVEN, "local", cache="uneven-cache-ray", data=data,
                        batch_rows=5000).manifest
    return {
        "uneven_rows": pq.read_metadata(data).num_rows,
        "uneven_largest_group": int(max(pq.read_table(data).column("sample").to_numpy()) + 1),
        "uneven_equal": same_outputs(work / "uneven-local", work / "uneven-ray"),
        "uneven_scored_by_ray": scored(ray_manifest),
        "uneven_rows_in": [s["rows_in"] for s in ray_manifest["steps"]],
        "uneven_workers": ray_manifest["executor"]["steps"],
        "uneven_seconds": timings,
        "cache_local_after_ray_scored": scored(local_again),
        "cache_local_after_ray_equal": same_outputs(work / "uneven-local", work / "uneven-local-from-ray-cache"),
    }


KILLED_DRIVER = """
import sys, ray
sys.path.insert(0, {tests!r})
import ray_checks
ray.init(address={address!r}, log_to_driver=False)
ray_checks.build(ray_checks.Path({work!r}), "killed", [{{"slow_length": {{"pause": 0.2}}}}], "ray",
                 cache="killed-cache", data=ray_checks.Path({data!r}), batch_rows=100)
"""


def killed(work: Path, address: str) -> dict:
    """kill -9 of a Ray driver mid-step, then a re-run: resumes, and equals an uninterrupted local run."""
    data = work / "example.parquet"  # Parquet is read in batch_rows pieces (JSONL in one block)
    pq.write_table(pajson.read_json(EXAMPLE / "candidates.jsonl"), data)
    script = KILLED_DRIVER.format(tests=str(TESTS), address=address, work=str(work), data=str(data))
    driver = subprocess.Popen([sys.executable, "-c", script])
    store = work / "killed-cache" / "scores"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(store.glob("*/part-*.arrow"))) < 4 and driver.poll() is None:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    parts = list(store.glob("*/part-*.arrow"))
    rows_stored = sum(ipc.open_file(str(part)).read_all().num_rows for part in parts)
    finished_before_kill = (work / "killed" / "manifest.json").exists()
    resumed = build(work, "killed", [{"slow_length": {"pause": 0.2}}], "ray", cache="killed-cache", data=data,
                    batch_rows=100).manifest
    build(work, "killed-reference", [{"slow_length": {"pause": 0.0}}], "local", cache="killed-fresh", data=data,
          batch_rows=100)
    return {
        "killed_parts_at_kill": len(parts),
        "killed_rows_stored_at_kill": rows_stored,
        "killed_finished_before_kill": finished_before_kill,
        "killed_resumed_scored": resumed["steps"][0]["rows_scored"],
        "killed_rows_in": resumed["steps"][0]["rows_in"],
        "killed_equal": same_outputs(work / "killed", work / "killed-reference"),
    }


def errors(work: Path) -> dict:
    try:
        build(work, "error", ["short_changed"], "ray", cache="error-cache", data=EXAMPLE / "candidates.jsonl")
    except CuratorError as exc:
        return {"error_message": str(exc)}
    return {"error_message": None}


def command_line(work: Path, address: str) -> dict:
    """``curator build --executor ray --ray-address`` joins the running cluster."""
    run = subprocess.run([sys.executable, "-m", "curator", "build", str(EXAMPLE / "self_consistency.yaml"),
                          "--output", str(work / "cli-ray"), "--executor", "ray", "--ray-address", address,
                          "--no-progress"], capture_output=True, text=True)
    local = run_build(load_recipe(EXAMPLE / "self_consistency.yaml", [f"output={work / 'cli-local'}"]),
                      progress=False)
    manifest = json.loads((work / "cli-ray" / "manifest.json").read_text()) if run.returncode == 0 else {}
    return {
        "cli_returncode": run.returncode,
        "cli_stdout": run.stdout.strip(),
        "cli_stderr": run.stderr[-2000:],
        "cli_executor": manifest.get("executor"),
        "cli_equal": run.returncode == 0 and same_outputs(work / "cli-ray", local.output_dir),
    }


if __name__ == "__main__":
    main()
