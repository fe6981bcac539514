"""The built-in LoRA trainer (``curator train``) and the formats it shares with ``curator export``.

Programmatic use::

    from curator.train import TrainConfig, train

    result = train(TrainConfig(data="out/curated.parquet", model="Qwen/Qwen2.5-1.5B",
                               output="adapters/pos", max_steps=500, lora_r=16))

writes ``adapter_config.json`` + ``adapter_model.safetensors`` (load with
``peft.PeftModel.from_pretrained``), ``metrics.jsonl``, ``loss.png`` and
``manifest.json`` into ``output``. Importing this package does not import
torch; :func:`train` does, when called.

Modules: :mod:`~curator.train.formats` (row → text, shared with export),
:mod:`~curator.train.data` (read, filter, weight, tokenise),
:mod:`~curator.train.batching` (packing / length grouping),
:mod:`~curator.train.losses` (chunked fused cross-entropy, KL),
:mod:`~curator.train.memory` (micro-batch size and checkpointing that fit the memory),
:mod:`~curator.train.objectives` (the pluggable objective),
:mod:`~curator.train.model`, :mod:`~curator.train.loop`,
:mod:`~curator.train.checkpoint`, :mod:`~curator.train.results`,
:mod:`~curator.train.plot`. A new objective is a subclass of
:class:`curator.train.objectives.Objective` named in
:data:`curator.train.config.OBJECTIVES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from curator.train.config import OBJECTIVES, TrainConfig

if TYPE_CHECKING:
    from curator.train.loop import TrainResult


def train(config: TrainConfig, callbacks: Sequence[Callable[[dict[str, Any]], None]] = ()) -> TrainResult:
    """Run one training; see :func:`curator.train.loop.train`."""
    from curator.train.loop import train as run

    return run(config, callbacks)


__all__ = ["OBJECTIVES", "TrainConfig", "train"]
