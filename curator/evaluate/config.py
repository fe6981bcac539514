"""What one ``curator eval`` run measures, and what it found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curator.errors import CuratorError
from curator.evaluate.voting import PRESETS, STRATEGIES, TIE_RULES
from curator.formats import FORMATS
from curator.lm.loading import DTYPES, check_device, check_nat_backend
from curator.settings import check_bounds, setting


@dataclass
class EvalConfig:
    """Everything an evaluation depends on; recorded whole in ``metrics.json``."""

    model: str = setting(help="Model: hub name or local folder (the served name with --base-url).")
    data: str = setting(help="Test set: question plus reference (or GSM8K's answer with ####); a file or hf:NAME.")
    task: str = setting(help="Answer parser, e.g. gsm8k (see 'curator plugins').")
    strategy: str = setting(choices=STRATEGIES, help="How the answers of a question's samples become its prediction.")
    output: str = setting(help="Folder for predictions.parquet and metrics.json.")
    config: str | None = setting(None, help="The config (subset) of an hf:NAME test set, e.g. main for hf:openai/gsm8k.")
    split: str | None = setting(None, help="The split of an hf:NAME test set, e.g. test (default: its only split).")
    adapter: str | None = setting(
        None,
        help="A PEFT adapter folder to apply to --model (local backends), or a NAT folder (transformers).",
    )
    n: int | None = setting(None, minimum=1, help="Samples per question (default 16; greedy takes 1).")
    temperature: float = setting(0.7, minimum=0.0, help="Sampling temperature (not for greedy).")
    max_tokens: int = setting(256, minimum=1, help="Longest answer, in tokens.")
    ranker: str | None = setting(None, help="--strategy ranked: a ranker trained with --objective ranker.")
    preset: str = setting(
        "asc",
        choices=sorted(PRESETS),
        help="--strategy ranked: vote weights c0 + c1·s (sc 1,0; score_sum 0,1; asc 1,1; asc2 1,2).",
    )
    ranker_max_length: int = setting(
        512,
        minimum=1,
        help="--strategy ranked: longer candidates are not scored and get their question's mean score "
        "(as released).",
    )
    tie_rule: str = setting(
        "split",
        choices=TIE_RULES,
        help="Answers tied for the top vote: split scores 1/|ties| if the reference is among them "
        "(Dust into Gold's ASC); first gives the question to the answer sampled first.",
    )
    format: str = setting("natural", choices=FORMATS, help="Prompt layout; use the one the adapter was trained with.")
    backend: str | None = setting(None, help="Generation backend (default: transformers, or openai with --base-url).")
    base_url: str | None = setting(None, help="An OpenAI-compatible server (vLLM, SGLang...).")
    concurrency: int = setting(64, minimum=1, help="Requests in flight.")
    batch_size: int | None = setting(None, minimum=1, help="Sequences per batch for local backends.")
    seed: int | None = setting(0, help="Sampling seed.")
    device: str | None = setting(None, help="cuda, cpu... (local backends and the ranker).")
    dtype: str | None = setting(None, choices=DTYPES, help="Weight dtype of local models (auto: bf16 on CUDA, fp32 on CPU).")
    limit: int | None = setting(None, minimum=1, help="Evaluate the first N questions only.")
    progress: bool | None = setting(None, help="Progress bar on stderr (default: when stderr is a terminal).")

    def __post_init__(self) -> None:
        check_bounds(self, "eval")
        check_device(self.device)
        if self.strategy == "greedy":
            if self.n not in (None, 1):
                raise CuratorError("eval: strategy 'greedy' takes one completion per question (drop --n)")
            self.n, self.temperature = 1, 0.0
        elif self.n is None:
            self.n = 16
        if self.n > 1 and self.temperature == 0:
            raise CuratorError(
                f"eval: strategy {self.strategy!r} votes over samples, but at --temperature 0 all {self.n} "
                "are the greedy one: give a --temperature above 0"
            )
        if self.strategy == "ranked" and not self.ranker:
            raise CuratorError(
                "eval: strategy 'ranked' needs --ranker DIR (train one with --objective ranker)"
            )
        if self.strategy != "ranked" and self.ranker:
            raise CuratorError(f"eval: --ranker is used by strategy 'ranked' only, not {self.strategy!r}")
        check_nat_backend(self.adapter, self.backend_name, "eval")

    @property
    def backend_name(self) -> str:
        return self.backend or ("openai" if self.base_url else "transformers")


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    predictions: Path
    failed: int
