"""The built-in LoRA trainer (``curator train``).

Programmatic use::

    from curator.train import TrainConfig, run_train

    result = run_train(TrainConfig(data=["out/curated.parquet"], model="Qwen/Qwen2.5-1.5B",
                               output="adapters/pos", max_steps=500, lora_r=16))

writes ``adapter_config.json`` + ``adapter_model.safetensors`` (load with
``peft.PeftModel.from_pretrained``), ``metrics.jsonl``, ``loss.png`` and
``manifest.json`` into ``output``; ``objective="nat"`` writes a NAT folder
instead (:mod:`curator.train.nat`, load with :func:`curator.lm.loading.load_causal_lm`).
``data`` takes one path or several. Importing this package does not import
torch; :func:`run_train` does, when called.

Modules: :mod:`~curator.train.config` (the settings and the result),
:mod:`~curator.train.data` (read, filter, weight, tokenise),
:mod:`~curator.train.batching` (packing / length grouping),
:mod:`~curator.train.losses` (chunked fused cross-entropy, KL),
:mod:`~curator.train.memory` (micro-batch size and checkpointing that fit the memory),
:mod:`~curator.train.objectives` (the pluggable objective),
:mod:`~curator.train.nat` (NAT's objective; its layers are :mod:`curator.lm.nat`),
:mod:`~curator.train.model`, :mod:`~curator.train.loop`,
:mod:`~curator.train.checkpoint`, :mod:`~curator.train.results`,
:mod:`~curator.train.plot`. A new objective is a subclass of
:class:`curator.train.objectives.Objective` named in
:data:`curator.train.config.OBJECTIVES`. The text layouts are
:mod:`curator.formats`, shared with ``export`` and ``eval``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from curator.train.config import OBJECTIVES, TrainConfig, TrainResult


def run_train(config: TrainConfig, callbacks: Sequence[Callable[[dict[str, Any]], None]] = ()) -> TrainResult:
    """Run (or resume, or extend) one training; see :func:`curator.train.loop.run_train`."""
    from curator.train.loop import run_train as run

    return run(config, callbacks)


__all__ = ["OBJECTIVES", "TrainConfig", "TrainResult", "run_train"]
