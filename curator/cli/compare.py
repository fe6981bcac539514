"""``curator compare RECIPE.yaml ... --output DIR``: several recipes, one report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from curator.cli.options import config_options
from curator.report.analysis import BASE_MODEL
from curator.report.config import CompareConfig


@click.command()
@config_options(CompareConfig)
def compare(**settings: object) -> int:
    """Build each RECIPE over the same candidates and write report.html, report.md, report.json and figures/."""
    from curator.report.compare import run_compare

    result = run_compare(CompareConfig(**settings))  # type: ignore[arg-type]
    parts = []
    for outcome in result.outcomes:
        parts.append(f"{outcome.name} {outcome.manifest['rows_out']}/{outcome.manifest['rows_in']} kept"
                     + _accuracy(result.accuracy.get(outcome.name)))  # fmt: skip
    base = result.accuracy.get(BASE_MODEL)
    baseline = f"; {BASE_MODEL}{_accuracy(base)}" if base else ""
    click.echo(f"compared {len(parts)} recipes ({'; '.join(parts)}{baseline}) → {result.report.html}")
    return 0


def _accuracy(metrics: Mapping[str, Any] | None) -> str:
    if not metrics:
        return ""
    if metrics.get("accuracy") is None:
        return ", no adapter (no rows kept)"
    return f", accuracy {metrics['accuracy']:.3f}"
