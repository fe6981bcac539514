"""``curator compare RECIPE.yaml ... --output DIR``: several recipes, one report."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("recipes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--output", required=True, type=click.Path(path_type=Path), help="Folder for the builds and the report."
)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key in every recipe."
)
@click.option(
    "--train-eval", is_flag=True, help="Train an adapter on each recipe's curated rows and evaluate it."
)
@click.option("--model", help="--train-eval: the base model to fine-tune (path or hub name).")
@click.option(
    "--eval-data", type=click.Path(path_type=Path), help="--train-eval: the test set (question, reference)."
)
@click.option(
    "--strategy",
    type=click.Choice(["greedy", "self-consistency", "weighted"]),
    default="greedy",
    show_default=True,
    help="--train-eval: how each adapter is evaluated.",
)
@click.option(
    "--n", "samples", type=int, help="--train-eval: samples per question (default 16; greedy takes 1)."
)
@click.option(
    "--train-config", type=click.Path(path_type=Path), help="--train-eval: a TRAIN.yaml for every run."
)
@click.option("--max-steps", type=int, help="--train-eval: optimiser steps per run.")
@click.option(
    "--max-tokens", type=int, default=256, show_default=True, help="--train-eval: tokens per answer."
)
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr (on a terminal).")
def compare(
    recipes: tuple[Path, ...],
    output: Path,
    overrides: tuple[str, ...],
    train_eval: bool,
    model: str | None,
    eval_data: Path | None,
    strategy: str,
    samples: int | None,
    train_config: Path | None,
    max_steps: int | None,
    max_tokens: int,
    progress: bool,
) -> None:
    """Build each RECIPE over the same candidates and write report.md, report.html and figures/."""
    from curator.errors import CuratorError
    from curator.report.compare import compare_recipes

    runner = None
    if train_eval:
        if not model or eval_data is None:
            raise CuratorError("compare --train-eval needs --model and --eval-data")
        from curator.evaluate.trained import TrainThenEvaluate

        runner = TrainThenEvaluate(
            model=model,
            eval_data=eval_data,
            strategy=strategy,
            samples=samples,
            train_config=train_config,
            max_steps=max_steps,
            max_tokens=max_tokens,
            progress=progress,
        )
    result = compare_recipes(list(recipes), output, overrides=overrides, progress=progress, train_eval=runner)
    parts = []
    for outcome in result.outcomes:
        accuracy = result.accuracy.get(outcome.name)
        suffix = f", accuracy {accuracy['accuracy']:.3f}" if accuracy else ""
        parts.append(
            f"{outcome.name} {outcome.manifest['rows_out']}/{outcome.manifest['rows_in']} kept{suffix}"
        )
    click.echo(f"compared {len(parts)} recipes ({'; '.join(parts)}) → {result.report.html}")
