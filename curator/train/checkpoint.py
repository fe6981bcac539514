"""Resume checkpoints: trainable weights, AdamW moments and RNG state, all in safetensors.

A checkpoint is a folder written under a temporary name and renamed into
place, so ``--resume`` only ever sees complete ones. Nothing is pickled:
tensors go to safetensors keyed by parameter name, the rest to JSON, so a
checkpoint from elsewhere cannot run code when loaded. The data order is not
saved; it is recomputed from the seed, and the loop skips what was consumed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from curator.errors import CuratorError
from curator.lm.weights import check_safetensors, first_line
from curator.outputs import readable, write_json

FOLDER = "checkpoints"
_NAME = re.compile(r"^step-(\d+)$")


def trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Trainable parameters in a fixed order: the optimiser's order and the checkpoint's keys."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def save_checkpoint(
    output: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], keep: int
) -> Path:
    root = output / FOLDER
    final = root / f"step-{state['step']:08d}"
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    params = trainable(model)
    save_file({name: p.detach().cpu().contiguous() for name, p in params}, tmp / "trainable.safetensors")
    save_file(_optimizer_tensors(optimizer, params), tmp / "optimizer.safetensors")
    save_file(_rng_tensors(), tmp / "rng.safetensors")
    write_json(tmp / "state.json", state)
    readable(*tmp.iterdir())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(output)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(output: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = output / FOLDER
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _NAME.match(p.name)) and (p / "state.json").exists()
    ]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore weights, optimiser and RNG from ``path``; returns its ``state.json``."""
    params = trainable(model)
    weights = _read(path / "trainable.safetensors")
    names = {name for name, _ in params}
    if set(weights) != names or any(weights[name].shape != p.shape for name, p in params):
        raise CuratorError(f"{path}: checkpoint parameters do not match this model and LoRA configuration")
    with torch.no_grad():
        for name, p in params:
            p.copy_(weights[name])
    moments = _read(path / "optimizer.safetensors")
    saved = optimizer.state_dict()
    saved["state"] = {}
    for index, (name, _) in enumerate(params):
        entry = {key.split("::", 1)[1]: t for key, t in moments.items() if key.split("::", 1)[0] == name}
        if entry:
            saved["state"][index] = entry
    optimizer.load_state_dict(saved)
    _restore_rng(_read(path / "rng.safetensors"))
    return read_state(path)


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's ``state.json`` (step, tokens, the settings' fingerprint), without its tensors."""
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise CuratorError(
            f"{path / 'state.json'}: cannot read the checkpoint ({first_line(exc)}); {_REMOVE.format(path)}"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CuratorError(f"{path / 'state.json'}: not a checkpoint's state; {_REMOVE.format(path)}")
    return state


_REMOVE = "remove {} to resume from the checkpoint before it"


def _read(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors; a file the kill or a full disk damaged is named, with what to do."""
    try:
        check_safetensors(path)
        return load_file(path)
    except CuratorError as exc:
        raise CuratorError(f"{exc}; {_REMOVE.format(path.parent)}") from None
    except (OSError, SafetensorError) as exc:
        raise CuratorError(
            f"{path}: cannot read the checkpoint ({first_line(exc)}); {_REMOVE.format(path.parent)}"
        ) from None


def _optimizer_tensors(
    optimizer: torch.optim.Optimizer, params: list[tuple[str, torch.nn.Parameter]]
) -> dict[str, torch.Tensor]:
    tensors = {}
    for name, p in params:
        for key, value in optimizer.state.get(p, {}).items():
            value = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{name}::{key}"] = value.detach().cpu().contiguous()
    return tensors


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors |= {f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return tensors


def _restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [
        tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))
    ]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
