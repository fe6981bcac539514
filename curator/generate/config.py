"""What one ``curator generate`` run does, and what it did.

One dataclass holds every setting, for the command line (derived from its
fields) and for the API alike; :meth:`GenerateConfig.for_backend` hands
the backend the part that is its business.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curator.backend import BackendOptions
from curator.errors import CuratorError
from curator.generate.prompts import PROMPTS
from curator.hf import DatasetName, dataset_input
from curator.lm.loading import DTYPES, check_nat_backend
from curator.settings import check_bounds, setting

FINGERPRINT = (
    "input", "task", "backend", "model", "prompt", "n", "temperature", "top_p", "max_tokens",
    "answer_max_tokens", "exemplars", "seed", "logprobs", "chat", "adapter",
)
"""The settings that change what is generated: a run continues another only when these match."""


@dataclass(frozen=True)
class GenerateConfig:
    """Everything a generation run depends on; recorded in ``manifest.json``."""

    input: str = setting(
        help="Questions: JSONL, Parquet, Arrow, a saved HF dataset folder (id, question, reference), or hf:NAME."
    )
    output: str = setting(help="Output folder; re-running the same command there continues the run.")
    task: str = setting(help="Answer parser, e.g. gsm8k (see 'curator plugins').")
    model: str = setting(help="Model name at the server, or a local path / hub name.")
    config: str | None = setting(None, help="The config (subset) of an hf:NAME input, e.g. main for hf:openai/gsm8k.")
    split: str | None = setting(None, help="The split of an hf:NAME input, e.g. train (default: its only split).")
    adapter: str | None = setting(
        None, help="Local backends: a PEFT adapter applied to --model, or a NAT folder (transformers only)."
    )
    backend: str = setting("transformers", help="Generation backend: openai, transformers or vllm (see 'curator plugins').")
    base_url: str | None = setting(None, help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
    api_key_env: str = setting(
        "OPENAI_API_KEY", help="Environment variable holding the API key (the key itself is never written)."
    )
    prompt: str = setting("zero-shot-cot", choices=PROMPTS, help="Zero-shot CoT in two stages (Fine-tune-CoT's teacher) or few-shot CoT.")
    exemplars: str | None = setting(
        None, help="Few-shot exemplars, JSONL with question and answer (default: built-in GSM8K ones)."
    )
    n: int = setting(
        1, minimum=1, help="Samples per question; --n N needs --temperature above 0 (at 0 every sample is the greedy one)."
    )
    temperature: float = setting(0.0, minimum=0.0, help="Sampling temperature; 0 is greedy, one sample per question.")
    top_p: float = setting(1.0, above=0.0, maximum=1.0, help="Nucleus sampling: the probability mass sampled from.")
    max_tokens: int = setting(512, minimum=1, help="Longest rationale, in tokens.")
    answer_max_tokens: int = setting(32, minimum=1, help="Longest zero-shot CoT answer (stage 2).")
    concurrency: int = setting(
        256, minimum=1, help="Requests in flight at once (openai); questions queued for batching (local backends)."
    )
    retries: int = setting(6, minimum=0, help="Retries per request for 429s, 5xx, timeouts and malformed answers.")
    timeout: float = setting(600.0, above=0.0, help="Seconds before a request is abandoned (and retried).")
    seed: int | None = setting(None, help="Sampling seed; each request gets one derived from it.")
    chat: bool = setting(
        False,
        flag="--chat/--completions",
        help="Send chat messages instead of completion prompts (local backends: use the chat template).",
    )
    logprobs: bool = setting(True, help="Ask for token log-probabilities (logprob and n_tokens columns).")
    batch_size: int | None = setting(None, minimum=1, help="Sequences per batch for local backends.")
    device: str | None = setting(None, help="Local backends: cuda, cuda:1, cpu (default: a GPU when there is one).")
    dtype: str | None = setting(None, choices=DTYPES, help="Local backends: weight dtype (auto: bf16 on CUDA, fp32 on CPU).")
    backend_options: tuple[str, ...] = setting(
        (),
        flag="--backend-option",
        metavar="KEY=VALUE",
        help="Backend-specific setting (openai: sent in the request body, e.g. top_k=20); repeatable.",
    )
    price_input: float | None = setting(None, minimum=0.0, help="USD per million prompt tokens, for the cost in the manifest.")
    price_output: float | None = setting(None, minimum=0.0, help="USD per million completion tokens.")
    flush_seconds: float = setting(2.0, minimum=0.0, help="How often finished questions are saved.")
    progress: bool | None = setting(None, help="Progress bar on stderr (default: when stderr is a terminal).")

    def __post_init__(self) -> None:
        check_bounds(self, "generate")
        extra = _parse_pairs(self.backend_options)
        if self.adapter is not None:
            if "adapter" in extra:
                raise CuratorError(
                    "generate: give the adapter once, as --adapter or as --backend-option adapter="
                )
            if self.backend == "openai":
                raise CuratorError(
                    "generate: --adapter is for local backends; "
                    "a server serves its adapters under a --model name"
                )
            check_nat_backend(self.adapter, self.backend, "generate")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change what is generated (:data:`FINGERPRINT`)."""
        settings = {name: getattr(self, name) for name in FINGERPRINT}
        if settings["adapter"] is None:
            del settings["adapter"]  # as runs before --adapter existed recorded it
        source = dataset_input(self.input, self.config, self.split)
        settings["input"] = str(source.resolved(Path.cwd()) if isinstance(source, DatasetName) else Path(source).resolve())
        return settings

    def for_backend(self) -> BackendOptions:
        """What the backend reads: where to send requests, how many at once, where a local model runs."""
        return BackendOptions(
            model=self.model, base_url=self.base_url, api_key_env=self.api_key_env, chat=self.chat,
            concurrency=self.concurrency, retries=self.retries, timeout=self.timeout, seed=self.seed,
            batch_size=self.batch_size, device=self.device, dtype=self.dtype,
            extra=_parse_pairs(self.backend_options) | ({"adapter": self.adapter} if self.adapter else {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings for the manifest; backend options by name only, as their values may be credentials.

        The base URL is left to the backend's own description, which redacts
        the credentials a URL may carry (userinfo, query secrets).
        """
        settings = dataclasses.asdict(self)
        settings["backend_options"] = sorted(_parse_pairs(self.backend_options))
        del settings["base_url"]
        return settings


@dataclass
class GenerateResult:
    """What a run did; ``failed`` questions make the command exit with 1."""

    output: Path
    questions: int
    rows: int
    failed: int
    manifest: dict[str, Any] = dataclasses.field(repr=False)


def _parse_pairs(pairs: tuple[str, ...]) -> dict[str, object]:
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
