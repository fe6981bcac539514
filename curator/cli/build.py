"""``curator build RECIPE``: run a recipe's filters and write the split."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click


@click.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key by dotted path, e.g. filters.0.entropy.threshold=0.5.")
@click.option("--output", type=click.Path(path_type=Path), help="Output folder (overrides the recipe's).")
@click.option("--device", help="Where model-backed filters run: cuda, cuda:1, cpu (default: a GPU when there is one).")
@click.option("--executor", type=click.Choice(["local", "ray"]),
              help="Score in this process (local, the default) or on Ray Data (overrides the recipe's 'executor').")
@click.option("--ray-address", metavar="ADDR",
              help="The Ray cluster to join with --executor ray (default: $RAY_ADDRESS, else start a local Ray).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar per step with rows/s on stderr (default: when stderr is a terminal).")
def build(recipe: Path, overrides: tuple[str, ...], output: Path | None, device: str | None, executor: str | None,
          ray_address: str | None, progress: bool | None) -> None:
    """Run RECIPE: curated.parquet, rejected.parquet and manifest.json in the output folder."""
    from curator.build import load_recipe, run_build

    if device:
        overrides = (*overrides, f"device={device}")
    if executor:
        overrides = (*overrides, f"executor={executor}")
    config = dataclasses.replace(load_recipe(recipe, overrides), ray_address=ray_address)
    result = run_build(config, output_dir=output, progress=progress)
    manifest = result.manifest
    steps = ", ".join(f"{s['step']} {s['rows_in']}→{s['rows_kept']}" for s in manifest["steps"])
    click.echo(
        f"{manifest['rows_in']} rows in, {manifest['rows_out']} kept, {manifest['rows_rejected']} rejected"
        f"{' (' + steps + ')' if steps else ''} → {result.output_dir}"
    )
