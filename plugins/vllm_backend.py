"""The ``vllm`` backend: vLLM's offline engine (``vllm.LLM``) in this process, on GPUs.

Registered always, so ``curator plugins`` lists it; vllm is imported only
when a run opens the backend, and a machine without it gets a one-line
error naming the package instead of an ImportError. vLLM schedules its own
continuous batching, so each call hands it every pending request (up to
``batch_size`` sequences, default 4096), each with its own seed, which makes
sampled outputs independent of what else was in the batch.

``--backend-option KEY=VALUE`` pairs go to ``vllm.LLM`` (for example
``tensor_parallel_size=2``, ``gpu_memory_utilization=0.85``,
``max_model_len=4096``); ``adapter=DIR`` serves a LoRA adapter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from curator import MissingDependency, RegisterBackend, hookimpl
from curator.backend import BackendOptions, BatchedBackend, Completion, Request, Result, SamplingParams, Usage


class VLLMBackend(BatchedBackend):
    """Batched generation with ``vllm.LLM``."""

    name = "vllm"
    default_batch_size = 4096

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self._llm: Any = None
        self._lora: Any = None

    async def open(self) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise MissingDependency("vllm", "the vllm backend") from exc
        engine = {k: v for k, v in self.options.extra.items() if k != "adapter"}
        adapter = self.options.extra.get("adapter")
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            engine.setdefault("enable_lora", True)
            self._lora = LoRARequest("adapter", 1, str(adapter))
        self._llm = await asyncio.to_thread(
            vllm.LLM,
            model=self.options.model,
            dtype=self.options.dtype or "auto",
            seed=self.options.seed or 0,
            **engine,
        )

    async def close(self) -> None:
        self._llm = None

    def batch_key(self, params: SamplingParams) -> None:
        """Everything batches together: vLLM takes sampling settings per request."""
        return None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "batch_size": self.batch_size, "chat": self.options.chat,
                "engine_options": sorted(self.options.extra)}

    def generate_batch(self, requests: Sequence[Request]) -> list[Result]:
        import vllm

        sampling = [
            vllm.SamplingParams(
                n=r.params.n,
                temperature=r.params.temperature,
                top_p=r.params.top_p,
                max_tokens=r.params.max_tokens,
                stop=list(r.params.stop) or None,
                logprobs=0 if r.params.logprobs else None,
                seed=r.params.seed,
            )
            for r in requests
        ]
        if self.options.chat:
            conversations = [[{"role": m.role, "content": m.content} for m in r.messages] for r in requests]
            outputs = self._llm.chat(conversations, sampling, use_tqdm=False, lora_request=self._lora)
        else:
            outputs = self._llm.generate([r.prompt for r in requests], sampling, use_tqdm=False,
                                         lora_request=self._lora)
        results = []
        for request, output in zip(requests, outputs):
            completions = tuple(
                Completion(o.text, o.cumulative_logprob if request.params.logprobs else None, len(o.token_ids),
                           o.finish_reason)
                for o in output.outputs
            )
            usage = Usage(len(output.prompt_token_ids or ()), sum(len(o.token_ids) for o in output.outputs))
            results.append(Result(request, completions, usage))
        return results


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register(VLLMBackend)
