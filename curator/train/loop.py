"""The training loop: LoRA + AdamW + cosine schedule, exact gradient accumulation, resumable.

Each optimiser step takes ``grad_accum`` micro-batches and divides every
micro-batch's loss sum by the loss units of the *whole step*, so the update
equals one big batch's ``Σ w·CE / Σ m`` whatever the accumulation, packing or
batch shapes. The data order is a pure function of seed and epoch, which is
what lets ``--resume`` skip the consumed micro-batches and land on exactly the
batches an uninterrupted run would have seen (RNG and AdamW state come from
the checkpoint). Resuming with a larger ``max_steps`` (or ``epochs``) extends a
run, finished or not, on the same data order.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curator.errors import CuratorError
from curator.lm.head import base_model
from curator.lm.loading import pad_id, resolve_device, torch_dtype
from curator.lm.memory import ModelShape, return_freed_memory
from curator.outputs import output_lock
from curator.progress import progress_bar
from curator.train import model as models
from curator.train.batching import collate, plan_batches
from curator.train.checkpoint import list_checkpoints, load_checkpoint, read_state, save_checkpoint, trainable
from curator.train.config import RESUME_INVARIANT, TrainConfig, TrainResult
from curator.train.data import Sample, TrainingTable, read_training_table
from curator.train.memory import MemoryPlan, MemoryWatch, Workload, enable_checkpointing, plan_memory
from curator.train.objectives import Objective, load_objective
from curator.train.plot import plot_loss, read_metrics
from curator.train.results import OUTPUTS, WEIGHT_FILES, MetricsLog, save_adapter, save_merged, write_manifest


@dataclass
class Run:
    """Everything set up before the first step."""

    config: TrainConfig
    objective: Objective
    data: TrainingTable
    samples: list[Sample]
    truncated: int
    tokenizer: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    dtype: torch.dtype
    packed: bool
    total_steps: int
    memory: MemoryPlan

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def lengths(self) -> np.ndarray:
        return np.array([s.length for s in self.samples])


def micro_batches(lengths: np.ndarray, config: TrainConfig, packed: bool, batch_tokens: int) -> Iterator[np.ndarray]:
    """Sample indices of every micro-batch in training order; endless when ``max_steps`` rules."""
    epochs = itertools.count() if config.max_steps else range(config.epochs)
    for epoch in epochs:
        rng = np.random.default_rng([config.seed, epoch])
        yield from plan_batches(lengths, batch_tokens, packed, rng)


def learning_rate(config: TrainConfig, step: int, total: int) -> float:
    """Linear warmup then cosine decay to ``min_lr_ratio × lr``; ``step`` counts from 0.

    ``total`` is the run's length as now configured, so a run extended on
    resume (a larger ``max_steps``) takes its remaining steps on the schedule
    of a run planned that long from the start: the rate goes back up to that
    curve at the checkpoint's step, then decays to the floor at the new end.
    """
    warmup = math.ceil(config.warmup_ratio * total)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def prepare(config: TrainConfig, saved_plan: MemoryPlan | None = None) -> Run:
    """Read and encode the data, load the model with the objective's fresh trainable layers, plan memory, build AdamW.

    ``saved_plan`` (a resumed run's) replaces the memory plan, so the run replays the same micro-batches.
    The plan is printed on stderr where progress is shown (a terminal, or ``--progress``), and is
    always in the manifest.
    """
    objective = load_objective(config)
    data = read_training_table(config.data, config.where, objective.columns, objective.build_files,
                               dataset_config=config.data_config, split=config.split)
    device = torch.device(resolve_device(config.device))
    dtype = torch_dtype(config.dtype, device.type)  # as for scoring: bf16 on CUDA, fp32 elsewhere
    tokenizer = models.load_tokenizer(config)
    samples, truncated = objective.encode(data, tokenizer)
    if not samples:
        raise CuratorError(
            f"{data.label}: no sample has a token left to learn (max_length {config.max_length})"
        )
    kwargs = models.load_kwargs(config, device, dtype)
    model = objective.adapt(models.load_base(objective, config.model, kwargs)).to(device)
    packed = _packing(config, models.attention_of(model), objective.packable)
    objective.setup(models.frozen_loader(objective, config, kwargs, device))
    params = [p for _, p in trainable(model)]
    lengths = np.array([s.length for s in samples])
    memory = saved_plan or _plan(config, model, params, lengths, packed, device, dtype)
    if memory.gradient_checkpointing and not config.gradient_checkpointing:
        enable_checkpointing(base_model(model))
    if sys.stderr.isatty() if config.progress is None else config.progress:
        print(memory.line() + (" (from the checkpoint)" if saved_plan else ""), file=sys.stderr)
    optimizer = torch.optim.AdamW(
        params, lr=config.lr, weight_decay=config.weight_decay, fused=device.type == "cuda"
    )
    total = config.max_steps or math.ceil(
        sum(1 for _ in micro_batches(lengths, config, packed, memory.batch_tokens)) / memory.grad_accum
    )
    return Run(
        config, objective, data, samples, truncated, tokenizer, model, optimizer, device, dtype, packed, total,
        memory,
    )


def _plan(
    config: TrainConfig,
    model: torch.nn.Module,
    params: list[torch.nn.Parameter],
    lengths: np.ndarray,
    packed: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> MemoryPlan:
    """The memory plan for this model and data (see :mod:`curator.train.memory`)."""
    if device.type == "cpu":
        return_freed_memory()
    work = Workload(
        shape=ModelShape.of(base_model(model).config),
        longest=int(lengths.max()),
        attention=models.attention_of(model),
        packed=packed,
        lora_r=config.lora_r,
        lora_dropout=config.lora_dropout,
        bytes_per_element=torch.finfo(dtype).bits // 8,
        fixed_bytes=sum(p.numel() for p in params) * 4 * 4,  # weights, gradients, two AdamW moments (fp32)
    )
    return plan_memory(
        work,
        batch_tokens=config.batch_tokens,
        grad_accum=config.grad_accum,
        checkpointing=config.gradient_checkpointing,
        device=str(device),
    )


def run_train(config: TrainConfig, callbacks: Sequence[Callable[[dict[str, Any]], None]] = ()) -> TrainResult:
    """Train a LoRA adapter as ``config`` says; ``callbacks`` get every record written to ``metrics.jsonl``."""
    inputs = [*config.data, config.model, config.teacher, config.negative_adapter]
    with output_lock(config.output, "train", inputs=inputs, writes=OUTPUTS):
        return _train(config, callbacks)


def _train(config: TrainConfig, callbacks: Sequence[Callable[[dict[str, Any]], None]]) -> TrainResult:
    session_start = time.perf_counter()
    output = Path(config.output)
    _check_output(output, config.resume)
    checkpoints = list_checkpoints(output) if config.resume else []
    run = prepare(config, _saved_plan(checkpoints))
    fingerprint = {
        "data": run.data.fingerprint,
        **{k: getattr(config, k) for k in RESUME_INVARIANT},
        **run.objective.fingerprint(),
    }
    state: dict[str, Any] = {
        "step": 0, "tokens": 0, "wall_time_s": 0.0, "fingerprint": fingerprint, "memory_plan": run.memory.to_dict()
    }
    if checkpoints:
        _check_resume(read_state(checkpoints[-1])["fingerprint"], fingerprint, checkpoints[-1])
        state = load_checkpoint(checkpoints[-1], run.model, run.optimizer)
        state.setdefault("memory_plan", run.memory.to_dict())
        if state["step"] > run.total_steps:
            raise CuratorError(
                f"{checkpoints[-1]}: cannot resume, the checkpoint is at step {state['step']}, past the "
                f"{run.total_steps} steps this run is set to (raise --max-steps or --epochs)"
            )
        state["fingerprint"] = fingerprint
    elif config.resume:
        warnings.warn_explicit(f"{output}: no checkpoint to resume from; starting a new run", UserWarning, "curator", 0)
    earlier_wall = state["wall_time_s"]

    def wall_time() -> float:
        return earlier_wall + time.perf_counter() - session_start

    def save() -> None:
        saved = dict(state, wall_time_s=wall_time(), log=log.pending())
        save_checkpoint(output, run.model, run.optimizer, saved, config.keep_checkpoints)

    (output / "manifest.json").unlink(missing_ok=True)  # the outputs change from here; written last
    watch = MemoryWatch(str(run.device), run.memory)
    with progress_bar(
        run.total_steps, "train", enabled=config.progress, unit="steps", initial=state["step"]
    ) as bar:
        log = MetricsLog(output / "metrics.jsonl", state["step"], config.log_every, run.device, callbacks, bar,
                         pending=state.pop("log", None))
        try:
            _steps(run, state, log, save, watch)
        finally:
            log.close()

    save_adapter(run.model, output)
    if config.merge:
        save_merged(run.model, run.tokenizer, output / "merged")
    wrote_plot = plot_loss(output / "metrics.jsonl", output / "loss.png")
    records = read_metrics(output / "metrics.jsonl")
    final_loss = records[-1]["loss"] if records else None
    outputs = [
        *run.objective.saved_files,
        "metrics.jsonl",
        *(["loss.png"] if wrote_plot else []),
        *(["merged/"] if config.merge else []),
    ]
    write_manifest(
        output,
        {
            "config": config.to_dict(),
            "data": _data_section(run),
            "model": _model_section(run),
            "memory": {**run.memory.to_dict(), **watch.summary()},
            "steps": state["step"],
            "tokens_seen": state["tokens"],
            "final_loss": final_loss,
            "wall_time_s": round(wall_time(), 3),
            "resumed_from": str(checkpoints[-1]) if checkpoints else None,
        },
        outputs,
    )
    return TrainResult(output, state["step"], state["tokens"], final_loss, wall_time())


def _steps(
    run: Run, state: dict[str, Any], log: MetricsLog, checkpoint: Callable[[], None], watch: MemoryWatch
) -> None:
    """Optimiser steps from ``state['step']`` to the end, skipping the micro-batches already trained on."""
    config, params, accumulate = run.config, run.params, run.memory.grad_accum
    stream = micro_batches(run.lengths, config, run.packed, run.memory.batch_tokens)
    for _ in range(state["step"] * accumulate):
        next(stream)
    pad = pad_id(run.tokenizer)
    run.model.train()
    while state["step"] < run.total_steps:
        plans = list(itertools.islice(stream, accumulate))
        if not plans:
            break
        batches = [collate([run.samples[i] for i in plan], run.packed, pad) for plan in plans]
        units = sum(b.count for b in batches)
        lr = learning_rate(config, state["step"], run.total_steps)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        for batch in batches:
            with models.autocast(run.device, run.dtype):
                loss = run.objective.loss(run.model, batch.to(run.device)) / units
            loss.backward()
            log.add_loss(loss)
            watch.check(state["step"] + 1)
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        step_tokens = sum(b.tokens for b in batches)
        state["tokens"] += step_tokens
        last = state["step"] == run.total_steps
        # The first step is always logged too, so that a run shorter than --log-every has a curve.
        log.step_done(state["step"], lr, step_tokens, state["tokens"], last or state["step"] == 1)
        if last or (config.save_every and state["step"] % config.save_every == 0):
            checkpoint()


def _saved_plan(checkpoints: list[Path]) -> MemoryPlan | None:
    """The memory plan a checkpointed run trained with (None for checkpoints written before plans were saved)."""
    if not checkpoints:
        return None
    saved = read_state(checkpoints[-1]).get("memory_plan")
    return MemoryPlan.from_dict(saved) if saved else None


def _data_section(run: Run) -> dict[str, Any]:
    data = run.data
    return {
        "path": data.label,
        "files": list(data.origins),
        "fingerprint": data.fingerprint,
        "where": run.config.where,
        "rows_read": data.rows_read,
        "rows_filtered_out": data.rows_filtered,
        "rows_weight_zero": data.rows_zero_weight,
        "samples": len(run.samples),
        "truncated": run.truncated,
        "tokens_per_epoch": int(run.lengths.sum()),
        "loss_units_per_epoch": sum(s.count for s in run.samples),
    }


def _model_section(run: Run) -> dict[str, Any]:
    return {
        "base": run.config.model,
        "dtype": str(run.dtype).removeprefix("torch."),
        "device": str(run.device),
        "attention": models.attention_of(run.model),
        "packed": run.packed,
        "trainable_parameters": sum(p.numel() for p in run.params),
        "parameters": sum(p.numel() for p in run.model.parameters()),
    }


def _packing(config: TrainConfig, attention: str, packable: bool) -> bool:
    if config.packing == "on" and not packable:
        raise CuratorError(f"train: objective '{config.objective}' cannot pack samples (use packing: off)")
    if config.packing != "auto":
        return config.packing == "on"
    return packable and attention in models.VARLEN_ATTENTION


def _check_output(output: Path, resume: bool) -> None:
    if not resume and (list_checkpoints(output) or any((output / name).exists() for name in WEIGHT_FILES)):
        raise CuratorError(f"{output}: already holds a training run (use --resume, or another --output)")


def _check_resume(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    changed = sorted(k for k in current if saved.get(k) != current[k])
    if changed:
        raise CuratorError(
            f"{path}: cannot resume, these settings differ from the checkpoint's: {', '.join(changed)}"
        )
