"""Reading a PEFT LoRA adapter folder as plain tensors, one (A, B, scaling) per adapted projection.

NAT takes the negative adapter that ``curator train`` wrote (PEFT's own
layout) and freezes it inside its own layers, so it needs the adapter's
weights exactly as saved, keyed by the module they adapt, rather than a
PEFT model. Only what a plain LoRA is gets through: DoRA, LoRA biases,
per-module rank or alpha patterns and extra saved modules would change
what the branch computes, so they are refused by name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curator.errors import CuratorError

if TYPE_CHECKING:
    import torch

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_REFUSED = {
    "use_dora": "DoRA",
    "lora_bias": "LoRA biases",
    "rank_pattern": "per-module ranks",
    "alpha_pattern": "per-module alphas",
    "modules_to_save": "extra saved modules",
    "fan_in_fan_out": "fan-in-fan-out (Conv1D) layers",
}


@dataclass(frozen=True)
class LoraWeights:
    """A LoRA adapter as tensors: ``update(x) = B(A(x)) · scaling`` for each named module."""

    path: Path
    config: dict[str, Any]
    a: dict[str, torch.Tensor]
    b: dict[str, torch.Tensor]
    scaling: float

    @property
    def modules(self) -> list[str]:
        """The adapted modules, named as in the transformers model (``model.layers.0.self_attn.q_proj``)."""
        return sorted(self.a)

    @property
    def rank(self) -> int:
        return int(self.config["r"])

    def digest(self) -> str:
        """A hash of the tensors and the scaling: the same adapter, whatever folder it sits in."""
        return tensor_digest({**self.a, **{f"{k}#B": v for k, v in self.b.items()}}, self.scaling)


def is_lora_folder(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def read_lora(path: str | Path) -> LoraWeights:
    """The adapter at ``path``: a causal-LM LoRA in safetensors, nothing PEFT-specific beyond that."""
    from safetensors.torch import load_file

    folder = Path(path)
    try:
        config = json.loads((folder / CONFIG).read_text())
    except FileNotFoundError:
        raise CuratorError(f"{folder}: not a PEFT adapter folder (no {CONFIG})") from None
    except ValueError as exc:
        raise CuratorError(f"{folder / CONFIG}: not valid JSON ({exc})") from None
    if config.get("peft_type") != "LORA" or config.get("task_type") not in (None, "CAUSAL_LM"):
        raise CuratorError(
            f"{folder}: a {config.get('task_type')} {config.get('peft_type')} adapter, not a causal-LM LoRA"
        )
    for key, what in _REFUSED.items():
        if config.get(key):
            raise CuratorError(f"{folder}: adapters with {what} ({key}) are not supported here")
    if not (folder / WEIGHTS).is_file():
        raise CuratorError(f"{folder}: no {WEIGHTS} (only safetensors weights are read)")
    a: dict[str, torch.Tensor] = {}
    b: dict[str, torch.Tensor] = {}
    for key, tensor in load_file(folder / WEIGHTS).items():
        name = key.removeprefix(_PREFIX)
        for suffix, into in ((".lora_A.weight", a), (".lora_B.weight", b)):
            if name.endswith(suffix):
                into[name.removesuffix(suffix)] = tensor
                break
        else:
            raise CuratorError(f"{folder / WEIGHTS}: unexpected tensor '{key}' for a plain LoRA")
    if not a or a.keys() != b.keys():
        raise CuratorError(f"{folder / WEIGHTS}: every adapted module needs both lora_A and lora_B")
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    scaling = alpha / r**0.5 if config.get("use_rslora") else alpha / r
    return LoraWeights(folder, config, a, b, scaling)


def tensor_digest(tensors: dict[str, torch.Tensor], *extra: object) -> str:
    """sha256 over names, shapes, dtypes and bytes of ``tensors`` (sorted by name), then ``extra``."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    digest.update(repr(extra).encode())
    return digest.hexdigest()[:32]


def _byte_dtype() -> Any:
    import torch

    return torch.uint8
