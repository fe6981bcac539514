"""``curator export``: curated rows as JSONL for TRL, LLaMA-Factory or Fine-tune-CoT (see :mod:`curator.export`)."""

from __future__ import annotations

import click

from curator.cli.options import config_options
from curator.export.config import ExportConfig


@click.command("export")
@config_options(ExportConfig)
def export(**settings: object) -> int:
    """Write FILE's curated rows as JSONL in a format other trainers read.

    alpaca and sharegpt files are registered in a LLaMA-Factory
    dataset_info.json beside OUT (or in --llamafactory-dir).
    """
    from curator.export import run_export

    config = ExportConfig(**settings)  # type: ignore[arg-type]
    result = run_export(config)
    note = f", skipped {result.skipped} weight-0 rows" if result.skipped else ""
    where = f"; LLaMA-Factory entry '{result.output.stem}' in {result.dataset_info}" if result.dataset_info else ""
    click.echo(f"wrote {result.written} records to {result.output}{note}{where}")
    if result.weights_dropped:
        click.echo(
            f"note: {result.weights_dropped} rows have weights other than 1, which {config.format} cannot carry "
            "(--extra weight adds them anyway)",
            err=True,
        )
    return 0
