"""``curator generate``: candidate rationales for a question file, resumable."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from curator.errors import CuratorError

PROMPTS = ("zero-shot-cot", "few-shot-cot")


def _backend_options(pairs: tuple[str, ...]) -> dict[str, object]:
    """``KEY=VALUE`` pairs; a VALUE that parses as JSON (numbers, true, lists) is taken as such."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CuratorError(f"--backend-option: expected KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


@click.command()
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="Questions: JSONL, Parquet, Arrow or a saved HF dataset folder (id, question, reference).")
@click.option("--output", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Output folder; re-running the same command there continues the run.")
@click.option("--task", required=True, help="Answer parser, e.g. gsm8k (see 'curator plugins').")
@click.option("--backend", default="transformers", show_default=True, help="openai, transformers or vllm.")
@click.option("--model", required=True, help="Model name at the server, or a local path / hub name.")
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="Environment variable holding the API key (the key itself is never written).")
@click.option("--prompt", type=click.Choice(PROMPTS), default="zero-shot-cot", show_default=True)
@click.option("--exemplars", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Few-shot exemplars, JSONL with question and answer (default: built-in GSM8K ones).")
@click.option("--n", type=click.IntRange(min=1), default=1, show_default=True,
              help="Samples per question; --n N needs --temperature above 0 (at 0 every sample is the greedy one).")
@click.option("--temperature", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Sampling temperature; 0 is greedy, one sample per question.")
@click.option("--top-p", type=click.FloatRange(min=0.0, max=1.0, min_open=True), default=1.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=512, show_default=True,
              help="Longest rationale, in tokens.")
@click.option("--answer-max-tokens", type=click.IntRange(min=1), default=32, show_default=True,
              help="Longest zero-shot CoT answer (stage 2).")
@click.option("--concurrency", type=click.IntRange(min=1), default=256, show_default=True,
              help="Requests in flight at once (openai); questions queued for batching (local backends).")
@click.option("--retries", type=click.IntRange(min=0), default=6, show_default=True,
              help="Retries per request for 429s, 5xx, timeouts and malformed answers.")
@click.option("--timeout", type=click.FloatRange(min=0.0, min_open=True), default=600.0, show_default=True,
              help="Seconds before a request is abandoned (and retried).")
@click.option("--seed", type=int, default=None, help="Sampling seed; each request gets one derived from it.")
@click.option("--chat/--completions", default=False, show_default=True,
              help="Send chat messages instead of completion prompts (local backends: use the chat template).")
@click.option("--logprobs/--no-logprobs", default=True, show_default=True,
              help="Ask for token log-probabilities (logprob and n_tokens columns).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Sequences per batch for local backends.")
@click.option("--device", default=None, help="Local backends: cuda, cuda:1, cpu (default: a GPU when there is one).")
@click.option("--dtype", default=None, help="Local backends: auto, bfloat16, float16, float32.")
@click.option("--backend-option", "backend_option", multiple=True, metavar="KEY=VALUE",
              help="Backend-specific setting (openai: sent in the request body, e.g. top_k=20).")
@click.option("--price-input", type=click.FloatRange(min=0.0), default=None,
              help="USD per million prompt tokens, for the cost in the manifest.")
@click.option("--price-output", type=click.FloatRange(min=0.0), default=None,
              help="USD per million completion tokens.")
@click.option("--flush-seconds", type=click.FloatRange(min=0.0), default=2.0, show_default=True,
              help="How often finished questions are saved.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr (on a terminal).")
def generate(
    input_path: Path, output: Path, task: str, backend: str, model: str, base_url: str | None, api_key_env: str,
    prompt: str, exemplars: Path | None, n: int, temperature: float, top_p: float, max_tokens: int,
    answer_max_tokens: int, concurrency: int, retries: int, timeout: float, seed: int | None, chat: bool,
    logprobs: bool, batch_size: int | None, device: str | None, dtype: str | None,
    backend_option: tuple[str, ...], price_input: float | None, price_output: float | None,
    flush_seconds: float, progress: bool,
) -> None:
    """Sample candidate rationales: candidates.parquet, failures.jsonl and manifest.json in OUTPUT.

    Exit code 1 when some questions still failed after all retries; running
    the same command again retries just those.
    """
    from curator.backend import BackendOptions
    from curator.generate import GenerateSettings, run_generate

    settings = GenerateSettings(
        input=str(input_path), output=str(output), task=task, backend=backend, model=model, prompt=prompt,
        n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, answer_max_tokens=answer_max_tokens,
        exemplars=None if exemplars is None else str(exemplars), seed=seed, logprobs=logprobs, chat=chat,
        price_input=price_input, price_output=price_output, flush_seconds=flush_seconds, progress=progress,
    )
    options = BackendOptions(
        model=model, base_url=base_url, api_key_env=api_key_env, chat=chat, concurrency=concurrency,
        retries=retries, timeout=timeout, seed=seed, batch_size=batch_size, device=device, dtype=dtype,
        extra=_backend_options(backend_option),
    )
    summary = run_generate(settings, options)
    usage = summary.manifest["usage"]
    click.echo(
        f"{summary.questions} questions, {summary.rows} candidates, {summary.failed} failed "
        f"({usage['requests']} requests, {usage['completion_tokens']} completion tokens) → {summary.output}"
    )
    if summary.failed:
        click.echo(f"curator: {summary.failed} questions failed after retries; see {summary.output}/failures.jsonl; "
                   "run the same command again to retry them", err=True)
        sys.exit(1)
