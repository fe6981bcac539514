"""``curator generate``: candidate rationales for a question file, resumable."""

from __future__ import annotations

import click

from curator.cli.options import config_options
from curator.generate.config import GenerateConfig


@click.command()
@config_options(GenerateConfig)
def generate(**settings: object) -> int:
    """Sample candidate rationales: candidates.parquet, failures.jsonl and manifest.json in OUTPUT.

    Exit code 1 when some questions still failed after all retries; running
    the same command again retries just those.
    """
    from curator.generate import run_generate

    result = run_generate(GenerateConfig(**settings))  # type: ignore[arg-type]
    usage = result.manifest["usage"]
    click.echo(
        f"{result.questions} questions, {result.rows} candidates, {result.failed} failed "
        f"({usage['requests']} requests, {usage['completion_tokens']} completion tokens) → {result.output}"
    )
    if result.failed:
        click.echo(f"curator: {result.failed} questions failed after retries; see {result.output}/failures.jsonl; "
                   "run the same command again to retry them", err=True)
        return 1
    return 0
