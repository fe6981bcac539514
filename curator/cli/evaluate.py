"""``curator eval``: accuracy of a model (+ adapter) on a test set."""

from __future__ import annotations

import sys

import click

from curator.evaluate.voting import PRESETS, STRATEGIES


@click.command("eval")
@click.option(
    "--model", required=True, help="Model: hub name or local folder (the served name with --base-url)."
)
@click.option("--adapter", help="A PEFT adapter folder to apply to --model (local backends).")
@click.option(
    "--data", required=True, help="Test set: question plus reference (or GSM8K's answer with ####)."
)
@click.option("--task", required=True, help="Answer parser, e.g. gsm8k (see 'curator plugins').")
@click.option("--strategy", required=True, type=click.Choice(STRATEGIES))
@click.option("--n", type=int, help="Samples per question (default 16; greedy takes 1).")
@click.option(
    "--temperature", type=float, default=0.7, show_default=True, help="Sampling temperature (not for greedy)."
)
@click.option("--ranker", help="--strategy ranked: a ranker trained with --objective ranker.")
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default="asc",
    show_default=True,
    help="--strategy ranked: vote weights c0 + c1·s (sc 1,0; score_sum 0,1; asc 1,1).",
)
@click.option(
    "--format",
    "format_",
    type=click.Choice(["natural", "fine-tune-cot", "chat"]),
    default="natural",
    show_default=True,
    help="Prompt layout; use the one the adapter was trained with.",
)
@click.option("--max-tokens", type=int, default=256, show_default=True)
@click.option("--backend", help="Generation backend (default: transformers, or openai with --base-url).")
@click.option("--base-url", help="An OpenAI-compatible server (vLLM, SGLang...).")
@click.option("--concurrency", type=int, default=64, show_default=True, help="Requests in flight.")
@click.option("--batch-size", type=int, help="Sequences per batch for local backends.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", help="cuda, cpu... (local backends and the ranker).")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]))
@click.option("--limit", type=int, help="Evaluate the first N questions only.")
@click.option("--output", required=True, help="Folder for predictions.parquet and metrics.json.")
@click.option("--progress/--no-progress", default=True)
def evaluate(format_: str, **options: object) -> None:
    """Accuracy with a 95% confidence interval: greedy, self-consistency, weighted or ranked (ASC) voting."""
    from curator.evaluate.run import EvalConfig, run_eval

    result = run_eval(EvalConfig(format=format_, **options))  # type: ignore[arg-type]
    m = result.metrics
    low, high = m["ci95"]
    failed = f", {result.failed} failed requests" if result.failed else ""
    click.echo(
        f"accuracy {m['accuracy']:.4f} (95% CI {low:.4f}–{high:.4f}) on {m['questions']} questions, "
        f"{m['config']['strategy']} n={m['config']['n']}{failed} → {result.predictions.parent}"
    )
    if result.failed:
        sys.exit(1)
