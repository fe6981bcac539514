"""The ``transformers`` backend: a local model, batched sampling on a GPU or the CPU.

The embedded default that needs no server. Requests that share sampling
settings are batched (``batch_size`` sequences, each request's ``n`` samples
counted), left-padded, and generated in one ``model.generate`` call. The
log-probability of a completion is taken from the model's raw logits, the
distribution the model itself assigns, before temperature or top-p, as vLLM
and OpenAI report it; the EOS token counts as one of its tokens.

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
    default_batch_size = 16

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self._lm: Any = None
        self._placement: dict[str, str] = {}

    async def open(self) -> None:
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
        self._lm.tokenizer.padding_side = "left"
        self._placement = {"device": str(self._lm.device), "dtype": str(self._lm.model.dtype).removeprefix("torch.")}
        if self.options.chat and not getattr(self._lm.tokenizer, "chat_template", None):
            raise CuratorError(f"--chat: the tokenizer of {self.options.model} has no chat template")

    async def close(self) -> None:
        self._lm = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "batch_size": self.batch_size, "chat": self.options.chat, **self._placement}

    def _render(self, request: Request) -> str:
        if not self.options.chat:
            return request.prompt
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        return self._lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate_batch(self, requests: Sequence[Request]) -> list[Result]:
        import torch

        lm, params = self._lm, requests[0].params
        tokenizer = lm.tokenizer
        texts = [self._render(r) for r in requests for _ in range(r.params.n)]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not self.options.chat)
        encoded = encoded.to(lm.device)
        seed = params.seed if params.seed is not None else self.options.seed
        if seed is not None:
            torch.manual_seed(seed)
        settings: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "do_sample": params.temperature > 0,
            "pad_token_id": lm.pad_id,
            "return_dict_in_generate": True,
            "output_logits": params.logprobs,
        }
        if params.temperature > 0:
            settings.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        if params.stop:
            settings.update(stop_strings=list(params.stop), tokenizer=tokenizer)
        with torch.inference_mode(), lm.active() as model:
            out = model.generate(**encoded, **settings)
            new = out.sequences[:, encoded["input_ids"].shape[1] :]
            logprobs = None
            if params.logprobs:
                steps = [torch.log_softmax(step.float(), -1).gather(1, new[:, i : i + 1]) for i, step in enumerate(out.logits)]
                logprobs = torch.cat(steps, 1).cpu()
        eos = _eos_ids(model, tokenizer)
        completions = [
            self._completion(new[row].tolist(), None if logprobs is None else logprobs[row], eos, params.stop)
            for row in range(new.shape[0])
        ]
        prompt_tokens = encoded["attention_mask"].sum(1).tolist()
        results, start = [], 0
        for request in requests:
            group = completions[start : start + request.params.n]
            usage = Usage(int(sum(prompt_tokens[start : start + request.params.n])), sum(c.n_tokens or 0 for c in group))
            results.append(Result(request, tuple(group), usage))
            start += request.params.n
        return results

    def _completion(self, ids: list[int], logprobs: Any, eos: set[int], stop: tuple[str, ...]) -> Completion:
        """Text, log-probability and length of one generated row, up to EOS or a stop string."""
        decode = self._lm.tokenizer.decode
        end = next((i + 1 for i, token in enumerate(ids) if token in eos), None)
        finish = "length" if end is None else "stop"
        length = len(ids) if end is None else end
        text = decode(ids[:length], skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
            low, high = 0, length  # the fewest tokens whose text reaches the cut
            while low < high:
                middle = (low + high) // 2
                if len(decode(ids[:middle], skip_special_tokens=True)) >= cut:
                    high = middle
                else:
                    low = middle + 1
            length = low
        logprob = None if logprobs is None else float(logprobs[:length].sum())
        return Completion(text, logprob, length, finish)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {int(i) for i in ids if i is not None}


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register(TransformersBackend)
