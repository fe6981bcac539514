"""The trainer's memory plan: micro-batch size and gradient checkpointing chosen to fit, or refused.

Left to itself (``batch_tokens`` and ``gradient_checkpointing`` unset) the
trainer keeps the optimiser step at :data:`DEFAULT_STEP_TOKENS` tokens and
splits it into as few micro-batches as fit the memory available, with
gradient accumulation making up the difference, so the update is the same
(the loss is divided by the units of the whole step). Checkpointing, which
costs a second forward pass, is turned on only when micro-batches without it
would fall under :data:`MIN_MICRO_TOKENS`, where the per-call overheads begin
to show. Settings the user gave are kept as given, and refused in one line
when the estimate says they cannot fit. The plan is printed, recorded in the
manifest, and saved in checkpoints so that a resumed run replays the same
micro-batches. While training, :class:`MemoryWatch` stops the run with a
clear error if the machine's memory runs low anyway (the estimate is a model).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from curator.errors import CuratorError
from curator.lm.memory import (
    SAFETY,
    ModelShape,
    available_memory,
    format_gib,
    resident_bytes,
    training_bytes,
)

DEFAULT_STEP_TOKENS = 8192
"""Tokens per optimiser step (per ``grad_accum`` unit) when ``batch_tokens`` is not set."""

MIN_MICRO_TOKENS = {"cpu": 512, "cuda": 4096}
"""Smallest micro-batch worth running without checkpointing: a CPU is efficient from a few hundred tokens."""

LOW_MEMORY = 0.05
"""MemoryWatch stops the run when less than this share of the planning-time headroom is left."""


@dataclass(frozen=True)
class MemoryPlan:
    """What the trainer runs with, and why."""

    batch_tokens: int
    grad_accum: int
    gradient_checkpointing: bool
    estimated_bytes: int
    available_bytes: int
    chosen: bool
    """True when the plan chose a setting the user left open."""

    def line(self) -> str:
        """The one line printed before training starts."""
        source = "chosen for the memory available" if self.chosen else "as configured"
        return (
            f"train: micro-batches of up to {self.batch_tokens:,} tokens, {self.grad_accum} per step, "
            f"gradient checkpointing {'on' if self.gradient_checkpointing else 'off'} ({source}: "
            f"estimated peak {format_gib(self.estimated_bytes)} of {format_gib(self.available_bytes)} available)"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MemoryPlan:
        return cls(**{k: values[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Workload:
    """What a micro-batch's memory depends on besides its token count."""

    shape: ModelShape
    longest: int
    attention: str
    packed: bool
    lora_r: int
    lora_dropout: float
    bytes_per_element: int = 4
    fixed_bytes: int = 0
    """Trainable parameters with their gradients and AdamW moments."""

    def bytes(self, tokens: int, checkpointing: bool) -> int:
        varlen = self.attention.startswith(("flash", "flex"))
        width = tokens if self.packed and not varlen else min(self.longest, tokens)
        return self.fixed_bytes + training_bytes(
            self.shape,
            tokens,
            width=width,
            checkpointing=checkpointing,
            attention=self.attention,
            lora_r=self.lora_r,
            lora_dropout=self.lora_dropout,
            bytes_per_element=self.bytes_per_element,
        )

    def largest(self, upper: int, checkpointing: bool, budget: float) -> int | None:
        """The most tokens (at least the longest sample, at most ``upper``) that fit ``budget``."""
        low = min(self.longest, upper)
        if self.bytes(low, checkpointing) > budget:
            return None
        high = upper
        while low < high:
            middle = (low + high + 1) // 2
            if self.bytes(middle, checkpointing) <= budget:
                low = middle
            else:
                high = middle - 1
        return low


def plan_memory(
    work: Workload,
    *,
    batch_tokens: int | None,
    grad_accum: int,
    checkpointing: bool | None,
    device: str,
    available: int | None = None,
) -> MemoryPlan:
    """The micro-batch budget, accumulation and checkpointing for ``work``; a CuratorError when nothing fits."""
    available = available_memory(device) if available is None else available
    budget = available * SAFETY
    kind = "cuda" if device.startswith("cuda") else "cpu"

    def plan(tokens: int, accumulate: int, ckpt: bool) -> MemoryPlan:
        chosen = batch_tokens is None or checkpointing is None
        return MemoryPlan(tokens, grad_accum * accumulate, ckpt, work.bytes(tokens, ckpt), available, chosen)

    if batch_tokens is not None:
        modes = [checkpointing] if checkpointing is not None else [False, True]
        for ckpt in modes:
            if work.bytes(batch_tokens, ckpt) <= budget:
                return plan(batch_tokens, 1, ckpt)
        raise CuratorError(_refusal(work, batch_tokens, modes[-1], available, budget, fixed_tokens=True))

    step = DEFAULT_STEP_TOKENS
    split: dict[bool, int | None] = {}
    for ckpt in [checkpointing] if checkpointing is not None else [False, True]:
        split[ckpt] = work.largest(step, ckpt, budget)
        enough = checkpointing is not None or (split[ckpt] or 0) >= min(step, MIN_MICRO_TOKENS[kind])
        if split[ckpt] is not None and enough:
            break
    usable = [(tokens, ckpt) for ckpt, tokens in split.items() if tokens is not None]
    if not usable:
        ckpt = True if checkpointing is None else checkpointing
        raise CuratorError(_refusal(work, min(work.longest, step), ckpt, available, budget, fixed_tokens=False))
    tokens, ckpt = usable[-1]
    accumulate = math.ceil(step / tokens)
    return plan(math.ceil(step / accumulate), accumulate, ckpt)


def _refusal(work: Workload, tokens: int, ckpt: bool, available: int, budget: float, fixed_tokens: bool) -> str:
    need = work.bytes(tokens, ckpt)
    advice = []
    if fixed_tokens:
        fits = work.largest(tokens, ckpt, budget)
        advice.append(f"lower --batch-tokens{f' (about {fits:,} fits)' if fits else ''}")
    else:
        advice.append(f"lower --max-length (the longest sample has {work.longest:,} tokens)")
    if not ckpt:
        advice.append("add --gradient-checkpointing")
    advice.append("or free memory")
    shape = work.shape
    return (
        f"train: a micro-batch of {tokens:,} tokens needs about {format_gib(need)} (estimated from the model's "
        f"shape: {shape.layers} layers, hidden {shape.hidden}, vocabulary {shape.vocab:,}; gradient checkpointing "
        f"{'on' if ckpt else 'off'}) but {format_gib(available)} is available; {', '.join(advice)}"
    )


def enable_checkpointing(model: Any) -> None:
    """Non-reentrant activation checkpointing on a transformers model (the name transformers 5 prefers)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


class MemoryWatch:
    """Peak memory while training, and a clear stop when the machine is close to running out."""

    def __init__(self, device: str, plan: MemoryPlan) -> None:
        import torch

        self.device, self.plan = device, plan
        self.cuda = device.startswith("cuda")
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
            self.start = torch.cuda.memory_allocated(device)
        else:
            self.start = resident_bytes() or 0
        self.floor = LOW_MEMORY * plan.available_bytes

    def check(self, step: int) -> None:
        left = available_memory(self.device)
        if left < self.floor:
            raise CuratorError(
                f"train: stopped at step {step}: only {format_gib(left)} of memory left (planned for an estimated "
                f"{format_gib(self.plan.estimated_bytes)}); lower --batch-tokens or add --gradient-checkpointing, "
                "then --resume"
            )

    def summary(self) -> dict[str, Any]:
        import torch

        if self.cuda:
            peak = torch.cuda.max_memory_allocated(self.device)
            return {"peak_allocated_bytes": peak, "peak_growth_bytes": peak - self.start}
        peak = resident_bytes("VmHWM") or 0
        return {"peak_rss_bytes": peak, "peak_growth_bytes": max(0, peak - self.start)}
