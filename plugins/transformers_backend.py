"""The ``transformers`` backend: a local model, batched sampling on a GPU or the CPU.

The embedded default that needs no server. Requests that share sampling
settings are batched (``batch_size`` sequences, each request's ``n`` samples
counted) and run through :mod:`curator.lm.decoding`: a KV-cached loop that
prefills the batch's common prefix (few-shot exemplars) and each prompt once,
drops finished rows, and samples with the request's settings only (the
model's ``generation_config`` temperature, top-p, top-k or repetition penalty
never apply). The log-probability of a completion is taken from the model's
raw logits, the distribution the model itself assigns, before temperature or
top-p, as vLLM and OpenAI report it; the EOS token counts as one of its
tokens. Generation stops at the tokenizer's and the generation config's EOS
ids, with ``--chat`` also at the token that closes the chat template's turn
(``<|im_end|>``), and at the request's stop strings (``\nQ:``).

Sampling is seeded per batch, so a sampled run is reproducible only when its
batches are the same; greedy decoding does not depend on batching. With
``--chat`` the prompt goes through the tokenizer's chat template.
``--backend-option adapter=DIR`` merges a PEFT adapter into the model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from curator import CuratorError, RegisterBackend, hookimpl
from curator.backend import BackendOptions, BatchedBackend, Completion, Request, Result, Usage


class TransformersBackend(BatchedBackend):
    """A causal LM loaded with transformers, in this process."""

    name = "transformers"
    default_batch_size = 32
    """Rows per batch on a CPU (128 on a GPU); the decoding loop lowers it where the cache would not fit."""

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self._lm: Any = None
        self._stops: set[int] = set()
        self._placement: dict[str, str] = {}

    async def open(self) -> None:
        from curator.lm.decoding import stop_token_ids
        from curator.lm.loading import load_causal_lm, require_lm

        require_lm("the transformers backend")
        extra = self.options.extra
        self._lm = await asyncio.to_thread(
            load_causal_lm,
            self.options.model,
            adapter=extra.get("adapter"),
            device=self.options.device,
            dtype=self.options.dtype,
            trust_remote_code=bool(extra.get("trust_remote_code", False)),
        )
        self._stops = stop_token_ids(self._lm, chat=self.options.chat)
        self._placement = {"device": str(self._lm.device), "dtype": str(self._lm.model.dtype).removeprefix("torch.")}
        if self.options.chat and not getattr(self._lm.tokenizer, "chat_template", None):
            raise CuratorError(f"--chat: the tokenizer of {self.options.model} has no chat template")

    async def close(self) -> None:
        self._lm = None

    @property
    def batch_size(self) -> int:
        on_gpu = self._lm is not None and str(self._lm.device).startswith("cuda")
        return self.options.batch_size or (4 * self.default_batch_size if on_gpu else self.default_batch_size)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "batch_size": self.batch_size, "chat": self.options.chat, **self._placement}

    def _render(self, request: Request) -> str:
        if not self.options.chat:
            return request.prompt
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        return self._lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate_batch(self, requests: Sequence[Request]) -> list[Result]:
        from curator.lm.decoding import Sampling, decode

        params = requests[0].params
        texts = [self._render(r) for r in requests]
        prompts = self._lm.tokenizer(texts, add_special_tokens=not self.options.chat)["input_ids"]
        sampling = Sampling(
            max_new_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=tuple(params.stop),
            seed=params.seed if params.seed is not None else self.options.seed,
        )
        counts = [r.params.n for r in requests]
        decoded = decode(
            self._lm, prompts, sampling, samples=counts, stop_ids=self._stops, batch_size=self.batch_size
        )
        results = []
        for request, prompt, group in zip(requests, prompts, decoded, strict=True):
            completions = tuple(
                Completion(d.text, d.logprob if params.logprobs else None, d.n_tokens, d.finish_reason)
                for d in group
            )
            usage = Usage(len(prompt) * request.params.n, sum(d.n_tokens for d in group))
            results.append(Result(request, completions, usage))
        return results


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register(TransformersBackend)
