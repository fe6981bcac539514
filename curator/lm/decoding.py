"""Batched sampling with a KV cache: the decoding loop behind the transformers backend and self_eval.

Written here rather than delegated to ``model.generate`` for five reasons,
each measured or seen on SmolLM2 on a CPU:

- **Shared prefill.** Few-shot prompts share hundreds of exemplar tokens and
  ``n`` samples share their whole prompt. The longest common token prefix of a
  batch is run once and its cache copied to every row; each distinct prompt's
  rest runs once and is copied to its ``n`` samples. Prefill was half the time
  of a few-shot batch through ``generate``.
- **Finished rows leave.** A row that reached EOS or a stop string is
  dropped from the batch (its cache rows with it) once a quarter of the batch
  has finished, so a long straggler does not make every finished row pay for
  each of its steps.
- **A preallocated cache.** Keys and values are written in place into
  buffers sized for the batch's longest possible sequence, instead of being
  concatenated (copied) at every step.
- **Bounded logits.** Only the last position's logits exist, ``[rows,
  vocab]`` for one step; the log-probability of the chosen token comes from
  their raw log-softmax (the distribution the model assigns, before
  temperature or top-p, as vLLM and OpenAI report it).
- **Our sampling, only.** Temperature, top-p and the stop strings are the
  request's; the model's ``generation_config`` (its own temperature, top-k,
  top-p, repetition penalty) is not consulted for anything but its EOS ids.
  Greedy is an argmax; sampling draws from a generator seeded per call.

Memory: rows per batch are capped so that the cache
(:func:`curator.lm.memory.kv_cache_bytes_per_token`) and the prefill fit the
memory available.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from curator.lm.head import base_model
from curator.lm.loading import LoadedModel
from curator.lm.memory import (
    ModelShape,
    affordable_tokens,
    inference_bytes_per_token,
    kv_cache_bytes_per_token,
)

if TYPE_CHECKING:
    import torch

COMPACT_SHARE = 0.25
"""Finished rows are dropped from the batch once they are this share of it."""


@dataclass(frozen=True)
class Sampling:
    """How to continue a prompt; ``temperature == 0`` is greedy."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Decoded:
    """One continuation: its text up to EOS or a stop string, and what it cost."""

    text: str
    logprob: float
    n_tokens: int
    finish_reason: str


def stop_token_ids(lm: LoadedModel, chat: bool = False) -> set[int]:
    """EOS ids of the tokenizer and the generation config, and with ``chat`` the token that ends a turn."""
    tokenizer = lm.tokenizer
    config = getattr(lm.model, "generation_config", None)
    configured = getattr(config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    if chat and getattr(tokenizer, "chat_template", None):
        ids.add(_turn_end(tokenizer))
    return {int(i) for i in ids if i is not None}


def _turn_end(tokenizer: Any) -> int | None:
    """The special token the chat template writes right after an assistant's message (``<|im_end|>``)."""
    marker = "\u2063MARK\u2063"
    turns = [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}]
    try:
        text = tokenizer.apply_chat_template(turns, tokenize=False)
    except Exception:  # a template that rejects this dialogue: fall back to the EOS ids
        return None
    rest = text[text.find(marker) + len(marker) :] if marker in text else ""
    ids = tokenizer(rest, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids)
    return next((int(i) for i in ids[:2] if i in special), None)


def decode(
    lm: LoadedModel,
    prompts: Sequence[Sequence[int]],
    sampling: Sampling,
    *,
    samples: Sequence[int] | None = None,
    stop_ids: set[int] | None = None,
    batch_size: int = 32,
    token_budget: int | None = None,
) -> list[list[Decoded]]:
    """``samples[i]`` continuations (default 1) of each tokenised prompt, in input order.

    Prompts are grouped by length into batches of at most ``batch_size``
    rows (a prompt's samples counted) whose prefill stays within
    ``token_budget`` padded tokens and whose cache fits the memory available.
    """
    import torch

    from curator.progress import report_rows

    counts = list(samples) if samples is not None else [1] * len(prompts)
    stops = stop_token_ids(lm) if stop_ids is None else stop_ids
    out: list[list[Decoded]] = [[] for _ in prompts]
    generator = None
    if sampling.temperature > 0:
        generator = torch.Generator(device=lm.device)
        generator.manual_seed(sampling.seed if sampling.seed is not None else int(torch.seed() % 2**63))
    with torch.inference_mode(), lm.active() as model:
        runner = _Runner(model, lm, sampling, stops, generator)
        for group in runner.groups(prompts, counts, batch_size, token_budget):
            for index, decoded in zip(group, runner.run([prompts[i] for i in group], [counts[i] for i in group]), strict=True):
                out[index] = decoded
            report_rows(len(group))
    return out


class _Runner:
    """One model, one sampling setting: batches prompts and runs the loop on each batch."""

    def __init__(self, model: Any, lm: LoadedModel, sampling: Sampling, stops: set[int], generator: Any) -> None:
        inner = base_model(model)
        parameters = inspect.signature(inner.forward).parameters
        self.model, self.lm, self.sampling, self.generator = model, lm, sampling, generator
        self.stops = stops
        self.cache_name = "cache" if "cache" in parameters else "past_key_values"
        self.keep_last = "logits_to_keep" in parameters
        self.shape = ModelShape.of(inner.config)
        self.element = next(inner.parameters()).element_size()
        self.layers = self.shape.layers
        self.window = 4 + max((len(s) for s in sampling.stop), default=0)

    def groups(
        self, prompts: Sequence[Sequence[int]], counts: list[int], batch_size: int, token_budget: int | None
    ) -> list[list[int]]:
        """Indices of prompts per batch: similar lengths together, within rows, prefill and cache budgets."""
        from curator.lm.scoring import default_token_budget

        budget = token_budget or default_token_budget(self.lm.device)
        order = np.argsort([-len(p) for p in prompts], kind="stable")
        groups: list[list[int]] = []
        current: list[int] = []
        for index in order:
            trial = [*current, int(index)]
            if current and not self._fits([prompts[i] for i in trial], [counts[i] for i in trial], batch_size, budget):
                groups.append(current)
                trial = [int(index)]
            current = trial
        if current:
            groups.append(current)
        return groups

    def _fits(self, prompts: list[Sequence[int]], counts: list[int], batch_size: int, budget: int) -> bool:
        rows = sum(counts)
        width = max(len(p) for p in prompts)
        prefill = len(prompts) * width
        capacity = width + self.sampling.max_new_tokens
        need = rows * capacity * kv_cache_bytes_per_token(self.shape, self.element)
        need += prefill * inference_bytes_per_token(self.shape, width=width, bytes_per_element=self.element)
        return rows <= batch_size and prefill <= budget and affordable_tokens(need, device=self.lm.device) >= 1

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor, cache: Any) -> torch.Tensor:
        """fp32 logits of the last position of each row, ``[rows, vocab]``."""
        kwargs: dict[str, Any] = {"input_ids": ids, "position_ids": positions, "use_cache": True, self.cache_name: cache}
        if mask is not None:
            kwargs["attention_mask"] = mask
        if self.keep_last:
            kwargs["logits_to_keep"] = 1
        return self.model(**kwargs).logits[:, -1].float()

    def run(self, prompts: list[Sequence[int]], counts: list[int]) -> list[list[Decoded]]:
        import torch

        device, pad = self.lm.device, self.lm.pad_id
        common = _common_prefix(prompts)
        suffixes = [list(p[common:]) for p in prompts]
        width = max(len(s) for s in suffixes)
        cache = _preallocated_cache(self.layers, common + width + self.sampling.max_new_tokens)
        if common:
            prefix = torch.as_tensor([list(prompts[0][:common])], device=device)
            self.forward(prefix, None, torch.arange(common, device=device)[None], cache)
            cache.batch_select_indices(torch.zeros(len(prompts), dtype=torch.long, device=device))
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), common + width), dtype=torch.long)
        mask[:, :common] = 1
        positions = torch.full((len(prompts), width), common, dtype=torch.long)
        for row, suffix in enumerate(suffixes):
            n = len(suffix)
            ids[row, width - n :] = torch.as_tensor(suffix)
            mask[row, common + width - n :] = 1
            positions[row, width - n :] = torch.arange(common, common + n)
        mask, next_position = mask.to(device), torch.as_tensor([len(p) for p in prompts], device=device)
        logits = self.forward(ids.to(device), mask, positions.to(device), cache)
        expand = torch.repeat_interleave(torch.arange(len(prompts)), torch.as_tensor(counts)).to(device)
        cache.batch_select_indices(expand)
        return self._loop(logits[expand], mask[expand], next_position[expand], cache, counts)

    def _loop(
        self, logits: torch.Tensor, mask: torch.Tensor, position: torch.Tensor, cache: Any, counts: list[int]
    ) -> list[list[Decoded]]:
        import torch

        rows = len(position)
        tokens: list[list[int]] = [[] for _ in range(rows)]
        logprobs: list[list[float]] = [[] for _ in range(rows)]
        done = [False] * rows
        live = list(range(rows))  # batch row -> output row
        for step in range(self.sampling.max_new_tokens):
            chosen = self._choose(logits)
            picked = torch.log_softmax(logits, -1).gather(1, chosen[:, None]).squeeze(1)
            for row, token, value in zip(live, chosen.tolist(), picked.tolist(), strict=True):
                if done[row]:
                    continue
                tokens[row].append(token)
                logprobs[row].append(value)
                done[row] = token in self.stops or self._hit_stop(tokens[row])
            if all(done) or step == self.sampling.max_new_tokens - 1:
                break
            finished = sum(done[row] for row in live)
            if finished >= max(1.0, COMPACT_SHARE * len(live)):
                keep = [i for i, row in enumerate(live) if not done[row]]
                index = torch.as_tensor(keep, device=chosen.device)
                cache.batch_select_indices(index)
                live = [live[i] for i in keep]
                chosen, mask, position = chosen[index], mask[index], position[index]
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
            logits = self.forward(chosen[:, None], mask, position[:, None], cache)
            position = position + 1
        tokenizer, stop = self.lm.tokenizer, self.sampling.stop
        decoded = [finish(tokenizer, tokens[row], logprobs[row], self.stops, stop) for row in range(rows)]
        out, start = [], 0
        for count in counts:
            out.append(decoded[start : start + count])
            start += count
        return out

    def _choose(self, logits: torch.Tensor) -> torch.Tensor:
        import torch

        if self.sampling.temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / self.sampling.temperature, -1)
        if self.sampling.top_p < 1:
            sorted_probs, order = probs.sort(-1, descending=True)
            # Keep the smallest head of the sorted distribution whose mass reaches top_p (at least one token).
            outside = sorted_probs.cumsum(-1) - sorted_probs >= self.sampling.top_p
            sorted_probs = sorted_probs.masked_fill(outside, 0.0)
            pick = torch.multinomial(sorted_probs, 1, generator=self.generator)
            return order.gather(1, pick).squeeze(1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)

    def _hit_stop(self, tokens: list[int]) -> bool:
        if not self.sampling.stop:
            return False
        tail = self.lm.tokenizer.decode(tokens[-self.window :], skip_special_tokens=True)
        return any(stop in tail for stop in self.sampling.stop)

def finish(
    tokenizer: Any, ids: Sequence[int], logprobs: Sequence[float], stop_ids: set[int], stop: Sequence[str]
) -> Decoded:
    """Text, log-probability and length of one generated row, up to EOS or the first stop string.

    The text is cut before the stop string; its tokens are the fewest whose
    text reaches the cut, and only they count in ``logprob`` and ``n_tokens``.
    """
    decode_ids = tokenizer.decode
    end = next((i + 1 for i, token in enumerate(ids) if token in stop_ids), None)
    reason = "length" if end is None else "stop"
    length = len(ids) if end is None else end
    text = decode_ids(list(ids[:length]), skip_special_tokens=True)
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    if cut >= 0:
        text, reason = text[:cut], "stop"
        low, high = 0, length
        while low < high:
            middle = (low + high) // 2
            if len(decode_ids(list(ids[:middle]), skip_special_tokens=True)) >= cut:
                high = middle
            else:
                low = middle + 1
        length = low
    return Decoded(text, float(sum(logprobs[:length])), length, reason)


def _common_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens every prompt starts with, leaving each at least one token of its own to run."""
    first, shortest = prompts[0], min(len(p) for p in prompts)
    n = 0
    while n < shortest - 1 and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def _preallocated_cache(layers: int, capacity: int) -> Any:
    """A transformers cache whose layers write into buffers of ``capacity`` positions."""
    from transformers.cache_utils import Cache, DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        """A dynamic layer that writes in place into a buffer allocated at the first update."""

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            rows, heads, _, _ = key_states.shape
            self.keys = key_states.new_empty((rows, heads, capacity, key_states.shape[-1]))
            self.values = value_states.new_empty((rows, heads, capacity, value_states.shape[-1]))
            self.device, self.length, self.is_initialized = key_states.device, 0, True

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            start, end = self.length, self.length + key_states.shape[-2]
            keys: Any = self.keys
            values: Any = self.values
            keys[:, :, start:end] = key_states
            values[:, :, start:end] = value_states
            self.length = end
            return keys[:, :, :end], values[:, :, :end]

        def get_seq_length(self) -> int:
            return self.length if self.is_initialized else 0

        def batch_select_indices(self, indices: Any) -> None:
            if self.is_initialized:
                keys: Any = self.keys
                values: Any = self.values
                self.keys, self.values = keys[indices], values[indices]

    return Cache(layers=[PreallocatedLayer() for _ in range(layers)])
