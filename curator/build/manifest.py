"""The build's manifest: the recipe, versions, the input, and per step what it did and what it meant."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from curator.build.planning import PlannedStep
from curator.build.recipe import Recipe
from curator.build.working_copy import Prepared
from curator.outputs import package_versions

if TYPE_CHECKING:
    from curator.build.selection import BuildState

SECONDS = ("score", "wall", "fit", "select")
"""``score``: time inside ``score()`` (summed over workers); ``wall``: the scoring phase end to end.

The build's ``phases`` are its own thread's seconds by phase (see :mod:`curator.build.phases`)."""


def build_manifest(recipe: Recipe, prepared: Prepared, steps: list[PlannedStep], state: BuildState,
                   executor: dict[str, Any], started: float, phases: dict[str, dict[str, float]]) -> dict[str, Any]:
    kept = int(state.reach.sum())
    step_reports = []
    for position, planned in enumerate(steps):
        report = planned.report
        rows_in = report.get("rows_in", 0)
        dropped = int((state.dropped_by == position).sum())
        step_reports.append({
            "step": planned.step.name,
            "filter": planned.step.filter,
            "plugin": planned.plugin,
            "distribution": planned.distribution,
            "options": planned.filter.options(),
            "columns": list(planned.output_names.values()),
            "meaning": planned.meaning,
            "scope": planned.filter.scope,
            "rows_in": rows_in,
            "rows_kept": rows_in - dropped,
            "rows_dropped": dropped,
            "rows_scored": report.get("rows_scored", 0),
            "stats": report.get("stats", {}),
            "facts": report.get("facts", {}),
            "warnings": report.get("warnings", []),
            "cached": report.get("cached", False),
            "cache": str(planned.store.dir),
            "seconds": {k: round(report.get(f"{k}_seconds", 0.0), 4) for k in SECONDS},
        })
    return {
        "command": "build",
        "recipe": recipe.raw,
        "recipe_path": str(recipe.source) if recipe.source else None,
        "task": recipe.task,
        "executor": executor,
        "input": {
            "path": str(prepared.source.path),
            "format": prepared.source.format,
            "fingerprint": prepared.fingerprint,
            "rows": prepared.num_rows,
            "groups": prepared.num_groups,
            "answer_filled_by_task": prepared.filled_answer,
        },
        "versions": package_versions(),
        "steps": step_reports,
        "rows_in": prepared.num_rows,
        "rows_out": kept,
        "rows_rejected": prepared.num_rows - kept,
        "seconds": round(time.time() - started, 3),
        "phases": phases,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
