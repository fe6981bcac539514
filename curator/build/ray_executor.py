"""The Ray Data executor: a step's missing rows scored by a pool of Ray actors, whole groups at a time.

The plan: a Ray Data pipeline over the working-copy batches that hold rows
the cache lacks. Its first stage runs on the driver's node (where the
working copy is) and packs each batch's rows to score into one row of Arrow
IPC bytes; the second is an actor pool (``map_batches`` with a callable
class: one GPU per actor for a model-backed filter when the cluster has
GPUs) that unpacks a batch, scores it with the same code as the local
executor, and packs the scores. Packing keeps groups whole whatever Ray does
to block sizes, and no shuffle is needed, since the working copy already
holds each group in one batch. The driver stores the scores by row key as
they arrive, in any order; gathering, ``fit``, ``select`` and writing then
run exactly as in a local build, so the outputs are the same row for row.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.ipc as ipc

from curator.build.scoring import ModelPool, ScoredRows, ScoringJob, StepWork, rows_to_score, score_rows
from curator.build.step_scores import StepPlan
from curator.build.working_copy import Prepared
from curator.errors import CuratorError
from curator.filter import Filter, FilterContext

PACKED = pa.schema([("unit", pa.int64()), ("rows", pa.int64()), ("data", pa.large_binary())])
PACKERS = 2
"""Packing tasks at a time: reading is fast, and each task not running keeps a worker process free."""
SCORED = pa.schema([("unit", pa.int64()), ("data", pa.large_binary()), ("warnings", pa.string()), ("facts", pa.string()),
                    ("seconds", pa.float64()), ("error", pa.string())])


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None) -> None:
        import ray
        import ray.data

        self.address = address or os.environ.get("RAY_ADDRESS")
        self.owns = not ray.is_initialized()
        if self.owns:
            options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
            if self.address:
                ray.init(address=self.address, **options)
            else:  # a local Ray for this build only
                ray.init(include_dashboard=False, **options)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the build draws its own bar per step
        context.print_on_execution_start = False
        context.enable_auto_log_stats = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # not its notes on our settings
        self.resources = {k: float(v) for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        self.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        self.steps: dict[str, dict[str, Any]] = {}

    def workers(self, job: ScoringJob) -> dict[str, Any]:
        """How many workers score the step (never more than it has batches), and what each holds."""
        gpus = int(self.resources.get("GPU", 0))
        model = job.work.filter.uses_model
        if model and gpus:
            default, per_worker = gpus, {"num_gpus": 1, "num_cpus": 1}
        else:
            default, per_worker = 1 if model else max(1, int(self.resources.get("CPU", 1))), {"num_cpus": 1}
        size = max(1, min(job.concurrency or default, len(job.plan.todo_batches)))
        return {"workers": size, "kind": "actors" if model else "tasks", **per_worker}

    def score(self, job: ScoringJob, advance: Callable[[int], None]) -> Iterator[ScoredRows]:
        import ray
        import ray.data

        workers = self.workers(job)
        self.steps[job.work.step] = workers
        units = ray.data.from_items([{"unit": i} for i in job.plan.todo_batches],
                                    override_num_blocks=min(len(job.plan.todo_batches), 64))
        driver_node = {"ray.io/node-id": ray.get_runtime_context().get_node_id()}
        pack = partial(_pack, prepared=job.prepared, plan_path=job.plan.path, filter=job.work.filter)
        packed = units.map_batches(pack, batch_format="pyarrow", batch_size=1, num_cpus=0, label_selector=driver_node,
                                   compute=ray.data.TaskPoolStrategy(size=PACKERS))
        resources = {k: v for k, v in workers.items() if k.startswith("num_")}
        if workers["kind"] == "actors":  # a model loads once per actor
            scored = packed.map_batches(_Scorer, fn_constructor_kwargs={"work": job.work}, batch_format="pyarrow",
                                        batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers["workers"]),
                                        **resources)
        else:  # nothing to load: tasks reuse Ray's pooled worker processes
            scored = packed.map_batches(partial(_score_packed, work=job.work), batch_format="pyarrow",
                                        batch_size=1, compute=ray.data.TaskPoolStrategy(size=workers["workers"]),
                                        **resources)
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            for item in cast(pa.Table, batch).to_pylist():
                if item["error"] is not None:
                    raise CuratorError(item["error"])
                table = ipc.open_stream(pa.py_buffer(item["data"])).read_all()
                advance(table.num_rows)
                yield ScoredRows(table, item["unit"], json.loads(item["warnings"]), json.loads(item["facts"]),
                                 item["seconds"])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address or "local", "nodes": self.nodes,
                "resources": self.resources, "steps": self.steps}

    def close(self) -> None:
        import ray

        if self.owns:
            ray.shutdown()


def _pack(units: pa.Table, *, prepared: Prepared, plan_path: Path, filter: Filter) -> pa.Table:
    """First stage, on the driver's node: each working-copy batch's rows to score (the columns ``filter`` reads),
    as one row of IPC bytes."""
    plan = StepPlan.reader(plan_path)
    out: dict[str, list[Any]] = {"unit": [], "rows": [], "data": []}
    for index, first_row, batch in prepared.batches(units.column("unit").to_pylist()):
        rows = rows_to_score(batch, first_row, plan.todo_rows(index), filter)
        out["unit"].append(index)
        out["rows"].append(rows.num_rows)
        out["data"].append(_to_bytes(pa.Table.from_batches([rows])))
    return pa.table(out, schema=PACKED)


class _Scorer:
    """Second stage for a model-backed step, an actor: holds the filter and its models across batches."""

    def __init__(self, work: StepWork) -> None:
        self.work = work
        self.context = work.context(ModelPool())

    def __call__(self, packed: pa.Table) -> pa.Table:
        return _score_all(self.work, packed, self.context)


def _score_packed(packed: pa.Table, *, work: StepWork) -> pa.Table:
    """Second stage for a model-free step, a task."""
    return _score_all(work, packed, work.context(ModelPool()))


def _score_all(work: StepWork, packed: pa.Table, context: FilterContext) -> pa.Table:
    """Score each packed batch; a user error travels back as data (Ray keeps only its traceback's text)."""
    out: dict[str, list[Any]] = {"unit": [], "data": [], "warnings": [], "facts": [], "seconds": [], "error": []}
    for unit, data in zip(packed.column("unit").to_pylist(), packed.column("data").to_pylist()):
        rows = ipc.open_stream(pa.py_buffer(data)).read_all().combine_chunks().to_batches()[0]
        error: str | None = None
        try:
            scored = score_rows(work, unit, rows, context)
        except CuratorError as exc:
            scored, error = ScoredRows(pa.table({}), unit), str(exc)
        out["unit"].append(unit)
        out["data"].append(_to_bytes(scored.table))
        out["warnings"].append(json.dumps(scored.warnings))
        out["facts"].append(json.dumps(scored.facts, default=str))
        out["seconds"].append(scored.seconds)
        out["error"].append(error)
    return pa.table(out, schema=SCORED)


def _to_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
