"""``curator train``: LoRA fine-tuning on curated data, loss weighted by ``weight``."""

from __future__ import annotations

import click

from curator.train.config import DTYPES, FORMATS, OBJECTIVES, PACKING, TrainConfig


@click.command("train")
@click.option("--data", help="Curated rows: Parquet, JSONL, Arrow or a saved dataset folder.")
@click.option("--model", help="Base model: hub name or local folder.")
@click.option("--output", help="Folder for the adapter, checkpoints, metrics.jsonl, loss.png, manifest.json.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TRAIN.yaml; options given here override it.",
)
@click.option("--max-steps", type=int, help="Optimiser steps (overrides --epochs).")
@click.option("--epochs", type=int)
@click.option("--lora-r", type=int)
@click.option("--lora-alpha", type=int)
@click.option("--lr", type=float)
@click.option("--resume", is_flag=True, default=None, help="Continue from the last checkpoint in --output.")
@click.option(
    "--where", multiple=True, help="Keep rows where COLUMN=VALUE (or !=, null); repeatable, all must hold."
)
@click.option("--format", "format_", type=click.Choice(FORMATS), help="Text layout (default natural).")
@click.option("--loss-on-prompt/--no-loss-on-prompt", default=None, help="Also learn the prompt tokens.")
@click.option(
    "--objective", type=click.Choice(sorted(OBJECTIVES)), help="sft (default), nce (needs --teacher), ranker or ranker-pairwise (the ASC ranker)."
)
@click.option("--teacher", help="NCE teacher P: a model folder or a PEFT adapter on the same base.")
@click.option("--seed", type=int)
@click.option(
    "--batch-tokens", type=int, help="Token budget of one micro-batch (padding counted when padded)."
)
@click.option("--grad-accum", type=int, help="Micro-batches per optimiser step.")
@click.option("--max-length", type=int, help="Longest sample in tokens; longer ones are truncated.")
@click.option(
    "--packing", type=click.Choice(PACKING), help="auto: pack when the attention is varlen (flash)."
)
@click.option("--save-every", type=int, help="Checkpoint every N steps (0: only at the end).")
@click.option("--log-every", type=int, help="Write metrics every N steps.")
@click.option("--merge/--no-merge", default=None, help="Also save the merged model under OUTPUT/merged.")
@click.option("--dtype", type=click.Choice(DTYPES), help="auto: bf16 on CUDA, fp32 on CPU.")
@click.option("--device", help="cuda, cuda:1, cpu (default: cuda when available).")
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None)
@click.option(
    "--trust-remote-code/--no-trust-remote-code",
    default=None,
    help="Run the model repo's own code (off by default).",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default on).")
def train(config_path: str | None, format_: str | None, where: tuple[str, ...], **options: object) -> None:
    """Train a LoRA adapter (PEFT format) on curated rationales."""
    from curator.train import train as run

    overrides = dict(options, format=format_, where=list(where) or None)
    config = TrainConfig.from_sources(config_path, overrides)
    result = run(config)
    loss = f", final loss {result.loss:.4f}" if result.loss is not None else ""
    click.echo(
        f"trained {result.steps} steps on {result.tokens} tokens{loss}; adapter in {result.output}", err=True
    )
