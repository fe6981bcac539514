"""``curator eval``: accuracy of a model (+ adapter) on a test set."""

from __future__ import annotations

import click

from curator.cli.options import config_options
from curator.evaluate.config import EvalConfig


@click.command("eval")
@config_options(EvalConfig)
def evaluate(**settings: object) -> int:
    """Accuracy with a 95% confidence interval: greedy, self-consistency, weighted or ranked (ASC) voting.

    Exit code 1 when some requests still failed after the backend's retries
    (they are scored as wrong and recorded in predictions.parquet).
    """
    from curator.evaluate.run import run_eval

    result = run_eval(EvalConfig(**settings))  # type: ignore[arg-type]
    m = result.metrics
    low, high = m["ci95"]
    failed = f", {result.failed} failed requests" if result.failed else ""
    click.echo(
        f"accuracy {m['accuracy']:.4f} (95% CI {low:.4f}–{high:.4f}) on {m['questions']} questions, "
        f"{m['config']['strategy']} n={m['config']['n']}{failed} → {result.predictions.parent}"
    )
    return 1 if result.failed else 0
