"""``curator compare``: build several recipes over the same candidates, then report.

Each recipe is built into ``DIR/recipes/<name>/`` through the ordinary build,
so scores go through the score cache: recipes that share a prefix of steps
(the same input, the same filters with the same options) score it once, and
recipes that differ only in a step's ``keep_percent`` score that step once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curator.errors import CuratorError
from curator.outputs import output_lock, package_versions, write_json
from curator.plugins import Registry, get_registry
from curator.report.analysis import RecipeOutcome, load_outcome
from curator.report.compose import ReportFiles, write_report
from curator.report.config import CompareConfig

TrainEval = Callable[[Path, Path, str], Mapping[str, Any]]
"""``(curated.parquet, work folder, task) -> metrics`` of a model trained on a recipe's curated rows."""


@dataclass
class CompareResult:
    outcomes: list[RecipeOutcome]
    report: ReportFiles
    accuracy: dict[str, Mapping[str, Any]]


def recipe_names(paths: Sequence[Path]) -> list[str]:
    """File stems, made unique with ``-2``, ``-3``... in the order given."""
    names: list[str] = []
    for path in paths:
        name, n = path.stem, 1
        while name in names:
            n += 1
            name = f"{path.stem}-{n}"
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
    train_eval: TrainEval | None = None
    if config.train_eval:
        from curator.evaluate.trained import TrainThenEvaluate

        train_eval = TrainThenEvaluate(config)
    recipes = [load_recipe(path, overrides) for path in paths]
    tasks = {r.task for r in recipes}
    if len(tasks) > 1:
        raise CuratorError(
            f"compare: the recipes use different tasks ({', '.join(sorted(tasks))}); compare one task"
        )
    names = recipe_names(paths)
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
    accuracy = {}
    if train_eval is not None:
        for outcome in outcomes:
            folder = output_dir / "recipes" / outcome.name
            accuracy[outcome.name] = train_eval(folder / "curated.parquet", folder, recipes[0].task)
    task = registry.task(recipes[0].task)
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

