"""Micro-batches under a token budget: packed rows, or length-grouped padded rows.

Packed: the samples of a micro-batch are laid end to end in one row whose
``position_ids`` restart at 0 for each sample and no attention mask is
passed. Flash-attention turns that into ``cu_seqlens`` (varlen, no padding at
all); in transformers 5 sdpa and eager build a block-diagonal mask from the
same restarts, so a sample never attends to its neighbour either (tested),
but at the cost of a dense ``L × L`` mask: there, length-grouped padded
batches are the faster correct choice. Targets were shifted per sample before
packing, so no position learns the first token of the next sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from curator.train.data import IGNORE, Sample

GROUP_SAMPLES = 1024
"""Length grouping sorts within windows of this many shuffled samples, so batches stay random."""


@dataclass
class Batch:
    """One micro-batch as tensors, with what the loss and the throughput meter need."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    targets: torch.Tensor
    token_weights: torch.Tensor
    sample_index: torch.Tensor
    positions: torch.Tensor
    weights: torch.Tensor
    values: dict[str, torch.Tensor]
    count: int
    tokens: int

    def to(self, device: torch.device | str) -> Batch:
        moved = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, torch.Tensor):
                value = value.to(device, non_blocking=True)
            elif isinstance(value, dict):
                value = {k: v.to(device, non_blocking=True) for k, v in value.items()}
            moved[spec.name] = value
        return Batch(**moved)

    def at_targets(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor``'s entries (``[rows, width, ...]``) at the positions that carry loss, flattened."""
        return tensor.flatten(0, 1).index_select(0, self.positions)

    def model_inputs(self) -> dict[str, torch.Tensor | bool | None]:
        """Keyword arguments for the model; no cache, or transformers ignores packed position ids."""
        return {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "attention_mask": self.attention_mask,
            "use_cache": False,
        }


def plan_batches(
    lengths: np.ndarray, batch_tokens: int, packed: bool, rng: np.random.Generator
) -> list[np.ndarray]:
    """Sample indices per micro-batch, in training order, each within ``batch_tokens``.

    Packed batches count real tokens; padded batches count ``rows × longest``,
    the memory they actually take. A sample longer than the budget gets a
    batch of its own.
    """
    order = rng.permutation(len(lengths))
    if packed:
        return _fill(order, lengths, lambda members, total: total <= batch_tokens)
    batches: list[np.ndarray] = []
    for start in range(0, len(order), GROUP_SAMPLES):
        window = order[start : start + GROUP_SAMPLES]
        window = window[np.argsort(-lengths[window], kind="stable")]
        # Descending lengths: the first member is the longest, so the cost is rows × first length.
        batches += _fill(
            window, lengths, lambda members, total: len(members) * lengths[members[0]] <= batch_tokens
        )
    return [batches[i] for i in rng.permutation(len(batches))]


def _fill(order: np.ndarray, lengths: np.ndarray, fits) -> list[np.ndarray]:
    batches: list[np.ndarray] = []
    current: list[int] = []
    total = 0
    for index in order:
        if current and not fits([*current, index], total + lengths[index]):
            batches.append(np.asarray(current))
            current, total = [], 0
        current.append(index)
        total += lengths[index]
    if current:
        batches.append(np.asarray(current))
    return batches


def collate(samples: Sequence[Sample], packed: bool, pad_id: int) -> Batch:
    """Tensors for one micro-batch; padding gets target ``IGNORE`` and weight 0, so it never counts."""
    lengths = [s.length for s in samples]
    if packed:
        rows, width = 1, sum(lengths)
    else:
        rows, width = len(samples), max(lengths)
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    targets = torch.full((rows, width), IGNORE, dtype=torch.long)
    position_ids = torch.arange(width).repeat(rows, 1)
    sample_index = torch.full((rows, width), -1, dtype=torch.long)
    attention_mask = None if packed else torch.zeros((rows, width), dtype=torch.long)
    offset = 0
    for n, sample in enumerate(samples):
        row, start = (0, offset) if packed else (n, 0)
        span = slice(start, start + sample.length)
        input_ids[row, span] = torch.from_numpy(sample.input_ids)
        targets[row, span] = torch.from_numpy(sample.targets)
        position_ids[row, span] = torch.arange(sample.length)
        sample_index[row, span] = n
        if attention_mask is not None:
            attention_mask[row, span] = 1
        offset += sample.length
    weights = torch.tensor([s.weight for s in samples], dtype=torch.float32)
    token_weights = torch.where(targets != IGNORE, weights[sample_index.clamp(min=0)], 0.0)
    # Found here on the CPU, so selecting them on the GPU needs no device sync.
    positions = torch.nonzero(targets.flatten() != IGNORE).squeeze(1)
    names = samples[0].values.keys()
    values = {k: torch.tensor([s.values[k] for s in samples], dtype=torch.float32) for k in names}
    return Batch(
        input_ids=input_ids,
        position_ids=position_ids,
        attention_mask=attention_mask,
        targets=targets,
        token_weights=token_weights,
        sample_index=sample_index,
        positions=positions,
        weights=weights,
        values=values,
        count=sum(s.count for s in samples),
        tokens=sum(lengths),
    )
