"""``curator train``: LoRA fine-tuning on curated data, loss weighted by ``weight``."""

from __future__ import annotations

import click

from curator.cli.options import config_options
from curator.train.config import TrainConfig


@click.command("train")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="TRAIN.yaml; options given here override it."
)
@config_options(TrainConfig, from_file="--config")
def train(config_path: str | None, **options: object) -> int:
    """Train a LoRA adapter (PEFT format) on curated rationales; with --objective nat, a NAT folder.

    --resume continues the run in OUTPUT from its last checkpoint; with a
    larger --max-steps it extends a finished run.
    """
    from curator.train import run_train

    result = run_train(TrainConfig.from_sources(config_path, options))
    loss = f", final loss {result.loss:.4f}" if result.loss is not None else ""
    click.echo(f"trained {result.steps} steps on {result.tokens} tokens{loss}; adapter in {result.output}")
    return 0
