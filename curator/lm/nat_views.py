"""P and N for ``nce_kl`` when one of them is a NAT folder, with the base in memory once where it can be.

The released code computes NCE's N from the NAT model itself, switching its
layers to the negative branch alone (``cur_mode = 'neg'``). Here the same
happens when the other adapter *is* the negative adapter NAT was trained
on: same modules, same tensors bit for bit, same scaling (checked by hash,
not by path). Any other partner, a different adapter or a second NAT folder,
gets a model of its own; the bare base (None) is the NAT model with its
layers off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from curator.lm.loading import LoadedModel, apply_adapter, is_nat_adapter
from curator.lm.nat import load_nat
from curator.lm.peft_lora import is_lora_folder, read_lora


def nat_views(
    load_base: Callable[[], Any], tokenizer: Any, device: str, first: str | None, second: str | None
) -> tuple[LoadedModel, LoadedModel]:
    """Views for ``first`` and ``second`` (at least one a NAT folder), in that order."""
    nat_path = first if is_nat_adapter(first) else second
    assert nat_path is not None
    nat = load_nat(load_base(), nat_path)

    def view(path: str | None) -> LoadedModel:
        if path == nat_path:
            return LoadedModel(nat, tokenizer, device, adapter="nat")
        if path is None:
            return LoadedModel(nat, tokenizer, device, adapters_off=True)
        if is_lora_folder(path) and read_lora(path).digest() == nat.negative_digest():
            return LoadedModel(nat, tokenizer, device, adapter="negative")
        return LoadedModel(apply_adapter(load_base(), path).eval(), tokenizer, device)

    return view(first), view(second)
