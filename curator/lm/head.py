"""What a causal LM does to its output head's logits, for code that runs the head itself.

Scoring and training both run the head on the positions that need it only,
in chunks, instead of calling the model's forward; so both must apply what
that forward applies after the head, or the filters would score, and the
trainer optimise, other logits than the model's own. Three architectures
do something there: Cohere multiplies by ``logit_scale``, Granite divides by
``logits_scaling``, and Gemma 2 and 3 soft-cap with
``cap · tanh(logits / cap)`` (``final_logit_softcapping``), in that order.
:func:`logit_adjustment` is the one place that knows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def base_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def logit_adjustment(model: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The function ``model`` applies to its head's output, or None when the head's output is the logits.

    Apply it to fp32 logits: soft-capping in bf16 would lose what it keeps.
    """
    inner = base_model(model)
    config = inner.config.get_text_config()
    scale = getattr(inner, "logit_scale", None)  # Cohere keeps it on the model
    divisor = getattr(config, "logits_scaling", None)
    cap = getattr(config, "final_logit_softcapping", None)
    if scale is None and divisor is None and cap is None:
        return None

    def adjust(logits: torch.Tensor) -> torch.Tensor:
        import torch

        if scale is not None:
            logits = logits * scale
        if divisor is not None:
            logits = logits / divisor
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits

    return adjust
