"""``curator compare``: build several recipes over the same candidates, then report.

Each recipe is built into ``DIR/recipes/<name>/`` through the ordinary build,
so scores go through the score cache: recipes that share a prefix of steps
(the same input, the same filters with the same options) score it once, and
recipes that differ only in a step's ``keep_percent`` score that step once.

With ``--train-eval`` two baselines are evaluated beside the recipes, on the
same test set: the base model without an adapter (``DIR/base-model/``), and
an adapter trained on every candidate (``DIR/no-filter/``, a build with no
filters). A recipe that keeps no rows is a result too: it is reported with
no adapter and no accuracy, and the comparison goes on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curator.errors import CuratorError
from curator.outputs import output_lock, package_versions, write_json
from curator.plugins import Registry, get_registry
from curator.report.analysis import BASE_MODEL, NO_FILTER
from curator.report.compose import ReportFiles, write_report
from curator.report.config import CompareConfig
from curator.report.outcomes import RecipeOutcome, load_outcome

NO_ROWS = "no rows kept: no adapter trained"


@dataclass
class CompareResult:
    outcomes: list[RecipeOutcome]
    report: ReportFiles
    accuracy: dict[str, Mapping[str, Any]]


def recipe_names(paths: Sequence[Path], given: Sequence[str | None] | None = None) -> list[str]:
    """Each recipe's ``name:`` or else its file stem, made unique with ``-2``, ``-3``... in the order given.

    The baselines' labels are taken, so a recipe never shares a row label with them.
    """
    names: list[str] = []
    for path, label in zip(paths, given or [None] * len(paths), strict=True):
        stem = label or path.stem
        name, n = stem, 1
        while name in names or name in (NO_FILTER, BASE_MODEL):
            n += 1
            name = f"{stem}-{n}"
        names.append(name)
    return names


def run_compare(config: CompareConfig, *, registry: Registry | None = None) -> CompareResult:
    """Build every recipe (scores shared through the cache), optionally train and evaluate, report."""
    inputs = [*config.recipes, config.eval_data, config.model, config.train_config]
    writes = ("manifest.json", "report.md", "report.html")
    with output_lock(config.output, "compare", inputs=inputs, writes=writes):
        return _compare(config, registry or get_registry())


def _compare(config: CompareConfig, registry: Registry) -> CompareResult:
    from curator.build import load_recipe, run_build

    paths, output_dir, overrides = [Path(p) for p in config.recipes], Path(config.output), config.overrides
    train_eval = None
    if config.train_eval:
        from curator.evaluate.trained import TrainThenEvaluate

        train_eval = TrainThenEvaluate(config)
    recipes = [load_recipe(path, overrides) for path in paths]
    tasks = {r.task for r in recipes}
    if len(tasks) > 1:
        raise CuratorError(
            f"compare: the recipes use different tasks ({', '.join(sorted(tasks))}); compare one task"
        )
    names = recipe_names(paths, [r.name for r in recipes])
    (output_dir / "manifest.json").unlink(missing_ok=True)  # the builds below change what it describes
    outcomes = []
    for name, recipe in zip(names, recipes, strict=True):
        folder = output_dir / "recipes" / name
        run_build(recipe, output_dir=folder, progress=config.progress, registry=registry)
        outcomes.append(load_outcome(name, folder))
    fingerprints = {o.manifest["input"]["fingerprint"] for o in outcomes}
    if len(fingerprints) > 1:
        inputs = ", ".join(f"{o.name}: {o.manifest['input']['path']}" for o in outcomes)
        raise CuratorError(f"compare: the recipes read different candidates ({inputs})")
    task_name = recipes[0].task
    accuracy: dict[str, Mapping[str, Any]] = {}
    if train_eval is not None:
        accuracy[BASE_MODEL] = train_eval.base(output_dir / "base-model", task_name)
        raw = {key: value for key, value in recipes[0].raw.items() if key != "name"} | {"filters": []}
        everything = dataclasses.replace(recipes[0], steps=[], name=None, raw=raw)
        run_build(everything, output_dir=output_dir / "no-filter", progress=config.progress, registry=registry)
        accuracy[NO_FILTER] = train_eval(output_dir / "no-filter" / "curated.parquet", output_dir / "no-filter",
                                         task_name)  # fmt: skip
        for outcome in outcomes:
            folder = output_dir / "recipes" / outcome.name
            if outcome.manifest["rows_out"] == 0:
                accuracy[outcome.name] = {"accuracy": None, "skipped": NO_ROWS}
            else:
                accuracy[outcome.name] = train_eval(folder / "curated.parquet", folder, task_name)
    task = registry.task(task_name)
    report = write_report(outcomes, output_dir, task=task, accuracy=accuracy)
    write_json(
        output_dir / "manifest.json",
        {
            "command": "compare",
            "recipes": [
                {
                    "name": n,
                    "path": str(p),
                    "output": str(output_dir / "recipes" / n),
                    "rows_out": o.manifest["rows_out"],
                }
                for n, p, o in zip(names, paths, outcomes, strict=True)
            ],
            "overrides": list(overrides),
            "config": config.to_dict(),
            "accuracy": accuracy,
            "versions": package_versions("matplotlib"),
        },
    )
    return CompareResult(outcomes, report, accuracy)
