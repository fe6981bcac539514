"""``--objective nat``: Dust into Gold's NAT, trained by the same loop, loss and checkpoints as SFT.

The loss is SFT's (weighted cross-entropy on the completion, packing and all).
What differs is the model: :meth:`NAT.adapt` wraps each adapted projection
in a :class:`curator.lm.nat.NatLinear` whose negative branch is copied bit
for bit from ``--negative-adapter`` and frozen, with a fresh positive LoRA
(B at zero) and integration unit (``change2`` at zero) as the trainable
parameters, so only those reach the optimiser and the checkpoints. A resume
checks that the negative adapter still holds the same tensors.

Settings (TRAIN.yaml or the API), and where they stand against the released
code (``finetune.py --stage 2`` with ``peft_NAT``):

- ``target_modules``: ``all-linear`` (the default) adapts every projection
  the negative adapter has a branch on; the released code adapts
  ``[q_proj, v_proj]``, which is also what to train the negative adapter on
  to reproduce it.
- ``lora_r``, ``lora_alpha``: the positive branch (released: 8 and 16); the
  negative branch keeps its own rank and scaling from its adapter.
- ``lora_dropout``: on the input of the positive branch (released: 0.05);
  ``nat_negative_dropout`` (default true, as released) applies the same
  dropout to the frozen negative branch's input while training.
- ``nat_width``: the integration width (released: 128).
- Initialisation is the released code's: A, Q, K and change1 kaiming-uniform,
  B and change2 zero.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from curator.lm.nat import NatSpec, build_nat, select_modules
from curator.lm.peft_lora import read_lora
from curator.lm.weights import NAT_FILES
from curator.train.config import TrainConfig
from curator.train.model import enable_checkpointing
from curator.train.objectives import SFT


class NAT(SFT):
    """SFT's loss on a NAT model: positive branch and integration unit trained, negative branch frozen."""

    saved_files: ClassVar[tuple[str, ...]] = NAT_FILES

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        assert config.negative_adapter is not None  # TrainConfig checks
        self.negative = read_lora(
            config.negative_adapter
        )  # read now: a bad folder fails before the model loads

    def adapt(self, model: torch.nn.Module) -> torch.nn.Module:
        config = self.config
        enable_checkpointing(model, config)
        spec = NatSpec(
            modules=select_modules(model, self.negative, config.target_modules),
            r=config.lora_r,
            lora_alpha=float(config.lora_alpha),
            lora_dropout=config.lora_dropout,
            negative_rank=self.negative.rank,
            negative_scaling=self.negative.scaling,
            width=config.nat_width,
            negative_dropout=config.nat_negative_dropout,
        )
        info: dict[str, Any] = {
            "base_model_name_or_path": config.model,
            "negative": {
                "source": str(config.negative_adapter),
                "r": self.negative.rank,
                "lora_alpha": self.negative.config.get("lora_alpha"),
                "modules_in_source": len(self.negative.modules),
            },
        }
        torch.manual_seed(config.seed)
        return build_nat(model, self.negative, spec, info)

    def fingerprint(self) -> dict[str, Any]:
        config = self.config
        return {
            "negative_adapter": config.negative_adapter,
            "negative_adapter_content": self.negative.digest(),
            "nat_width": config.nat_width,
            "nat_negative_dropout": config.nat_negative_dropout,
        }
