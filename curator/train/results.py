"""What a run leaves in its output folder: metrics log, adapter, merged model, manifest."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from curator.lm.weights import NAT_FILES
from curator.outputs import package_versions, readable, write_json
from curator.train.plot import read_metrics

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
WEIGHT_FILES = (ADAPTER_FILES[1], NAT_FILES[1])
"""A finished run's weights, PEFT's or NAT's: an output folder holding one is taken."""
OUTPUTS = (*ADAPTER_FILES, *NAT_FILES, "metrics.jsonl", "loss.png", "manifest.json")
"""The files a run writes in its output folder (beside ``checkpoints/`` and ``merged/``)."""


class MetricsLog:
    """``metrics.jsonl``: one record per logged step, averaged over the steps since the last one.

    Losses stay on the device between records, so logging costs one sync per
    record rather than one per micro-batch. A checkpoint keeps what was summed
    since the last record (:meth:`pending`), so the first record after a
    resume averages the same steps an uninterrupted run's does.
    """

    def __init__(
        self,
        path: Path,
        resumed_step: int,
        every: int,
        device: torch.device,
        callbacks: Sequence[Callable[[dict[str, Any]], None]],
        bar: Any,
        pending: dict[str, Any] | None = None,
    ) -> None:
        # Records written after the checkpoint we resume from are redone, so drop them.
        kept = [r for r in read_metrics(path) if r["step"] <= resumed_step]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.file = open(path, "a")  # noqa: SIM115 - closed by close()
        self.every, self.callbacks, self.bar = every, callbacks, bar
        self.loss = torch.zeros((), device=device)
        self.steps = self.tokens = 0
        if pending:
            self.loss += float(pending["loss"])
            self.steps, self.tokens = int(pending["steps"]), int(pending["tokens"])
        self.start = time.perf_counter()
        self.last_loss: float | None = None

    def add_loss(self, loss: torch.Tensor) -> None:
        self.loss += loss.detach()

    def step_done(self, step: int, lr: float, step_tokens: int, tokens_seen: int, last: bool) -> None:
        self.steps += 1
        self.tokens += step_tokens
        self.bar.update(1)
        if step % self.every and not last:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.last_loss = self.loss.item() / self.steps
        record = {
            "step": step,
            "loss": self.last_loss,
            "lr": lr,
            "tokens_per_s": self.tokens / elapsed,
            "tokens": tokens_seen,
        }
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        self.bar.set_postfix(
            loss=f"{self.last_loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{record['tokens_per_s']:.0f}"
        )
        for callback in self.callbacks:
            callback(record)
        self.loss.zero_()
        self.steps = self.tokens = 0
        self.start = time.perf_counter()

    def pending(self) -> dict[str, Any]:
        """The loss summed, and the steps and tokens counted, since the last record."""
        return {"loss": self.loss.item(), "steps": self.steps, "tokens": self.tokens}

    def close(self) -> None:
        self.file.close()


def save_adapter(model: Any, output: Path) -> None:
    """The model's own layout, renamed into place whole.

    PEFT's (what ``PeftModel.from_pretrained`` and vLLM load), or NAT's.
    """
    tmp = output / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for name in os.listdir(tmp):
        readable(tmp / name)  # safetensors writes through a 0600 temporary file
        os.replace(tmp / name, output / name)
    tmp.rmdir()


def save_merged(model: Any, tokenizer: Any, folder: Path) -> None:
    """The base with the adapter folded in, for servers and tools that take one plain model."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.merge_and_unload().save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    readable(*tmp.iterdir())
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def write_manifest(output: Path, sections: dict[str, Any], outputs: list[str]) -> None:
    write_json(
        output / "manifest.json",
        {
            "command": "train",
            **sections,
            "outputs": outputs,
            "versions": package_versions("torch", "transformers", "peft", "safetensors"),
        },
    )
