"""``curator build RECIPE``: run a recipe's filters and write the split."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key by dotted path, e.g. filters.0.entropy.threshold=0.5.")
@click.option("--output", type=click.Path(path_type=Path), help="Output folder (overrides the recipe's).")
@click.option("--device", help="Where model-backed filters run: cuda, cuda:1, cpu (default: a GPU when there is one).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar with rows/s on stderr (default: when stderr is a terminal).")
def build(recipe: Path, overrides: tuple[str, ...], output: Path | None, device: str | None,
          progress: bool | None) -> None:
    """Run RECIPE: curated.parquet, rejected.parquet and manifest.json in the output folder."""
    from curator.build.run import run_build
    from curator.build.recipe import load_recipe

    if device:
        overrides = (*overrides, f"device={device}")
    result = run_build(load_recipe(recipe, overrides), output_dir=output, progress=progress)
    manifest = result.manifest
    steps = ", ".join(f"{s['step']} {s['rows_in']}→{s['rows_kept']}" for s in manifest["steps"])
    click.echo(
        f"{manifest['rows_in']} rows in, {manifest['rows_out']} kept, {manifest['rows_rejected']} rejected"
        f"{' (' + steps + ')' if steps else ''} → {result.output_dir}"
    )
