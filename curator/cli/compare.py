"""``curator compare RECIPE.yaml ... --output DIR``: several recipes, one report."""

from __future__ import annotations

import click

from curator.cli.options import config_options
from curator.report.config import CompareConfig


@click.command()
@config_options(CompareConfig)
def compare(**settings: object) -> int:
    """Build each RECIPE over the same candidates and write report.md, report.html and figures/."""
    from curator.report.compare import run_compare

    result = run_compare(CompareConfig(**settings))  # type: ignore[arg-type]
    parts = []
    for outcome in result.outcomes:
        accuracy = result.accuracy.get(outcome.name)
        suffix = f", accuracy {accuracy['accuracy']:.3f}" if accuracy else ""
        parts.append(f"{outcome.name} {outcome.manifest['rows_out']}/{outcome.manifest['rows_in']} kept{suffix}")
    click.echo(f"compared {len(parts)} recipes ({'; '.join(parts)}) → {result.report.html}")
    return 0
