"""Loading the base model, its tokenizer and LoRA layers, and choosing the attention.

Device and dtype are chosen as for scoring (:mod:`curator.lm.loading`): on
CUDA the base weights are loaded in bf16 and the forward pass runs under bf16
autocast, while PEFT keeps the LoRA weights in fp32 for the optimiser.
Flash-attention is used when the ``flash_attn`` package is importable, and
only then is packing the default (see :mod:`curator.train.batching`).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from curator.errors import CuratorError
from curator.lm.loading import apply_adapter, hub_hint, is_nat_adapter
from curator.lm.weights import check_adapter, check_model, first_line
from curator.train.config import TrainConfig
from curator.train.objectives import Objective

VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention")
"""Attention implementations that turn restarting ``position_ids`` into per-sample attention cheaply."""


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when training in bf16; nothing otherwise."""
    if device.type == "cuda" and dtype == torch.bfloat16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_kwargs(config: TrainConfig, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    attention = config.attn_implementation
    if attention is None and device.type == "cuda" and importlib.util.find_spec("flash_attn"):
        attention = "flash_attention_2"
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": config.trust_remote_code, "use_safetensors": True}
    if attention:
        kwargs["attn_implementation"] = attention
    return kwargs


def load_tokenizer(config: TrainConfig) -> Any:
    from transformers import AutoTokenizer

    check_model(config.model)
    try:
        return AutoTokenizer.from_pretrained(config.model, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError, TypeError) as exc:
        raise CuratorError(f"{config.model}: cannot load the tokenizer ({hub_hint(exc)})") from None


def load_base(objective: Objective, path: str, kwargs: dict[str, Any]) -> torch.nn.Module:
    check_model(path)
    try:
        return objective.load_model(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise CuratorError(f"{path}: cannot load the model ({hub_hint(exc)})") from None


def with_lora(model: Any, config: TrainConfig, objective: Objective) -> torch.nn.Module:
    """Wrap ``model`` in fresh LoRA layers; the seed makes their initialisation repeatable."""
    from peft import LoraConfig, get_peft_model

    enable_checkpointing(model, config)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        task_type=objective.task_type,
        bias="none",
    )
    torch.manual_seed(config.seed)
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise CuratorError(f"LoRA target modules {config.target_modules!r}: {first_line(exc)}") from None


def enable_checkpointing(model: Any, config: TrainConfig) -> None:
    """Activation checkpointing when the config asks for it (non-reentrant: frozen inputs need no grad)."""
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def frozen_loader(
    objective: Objective, config: TrainConfig, kwargs: dict[str, Any], device: torch.device
) -> Callable[[str], torch.nn.Module]:
    """``load(path)`` for teachers: a model folder, or a PEFT (merged) or NAT adapter on the student's base"""

    def load(path: str) -> torch.nn.Module:
        if (Path(path) / "adapter_config.json").exists() or is_nat_adapter(path):
            adapter = check_adapter(path)
            model = apply_adapter(load_base(objective, config.model, kwargs), adapter)
        else:
            model = load_base(objective, path, kwargs)
        model.requires_grad_(False)
        return model.to(device).eval()

    return load


def attention_of(model: torch.nn.Module) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "_attn_implementation", None) or "eager")
