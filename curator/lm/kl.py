"""Per-sample KL divergence between two causal LMs on the same tokens.

Used by NCE (Dust into Gold): how far the negatives' model N strays from the
positives' model P on each rationale. The two models may be separate, or two
adapters on one base held once in memory (see
:func:`curator.lm.loading.load_adapter_pair`; with a NAT folder for P, N is
the NAT model's own negative branch when it is that adapter); either way each batch runs
through the body of N and of P, and the vocabulary-sized log-softmaxes are
taken a few rows at a time, as in :mod:`curator.lm.scoring`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from curator.errors import CuratorError
from curator.lm.loading import LoadedModel
from curator.lm.scoring import Encoded, Network, default_logit_budget, padded_batches, span_positions

if TYPE_CHECKING:
    import torch


RELEASED_SMOOTHING = 1e-7
"""What the released NCE code adds to N's probabilities before its KL (``softmax + 10 ** -7``)."""


def encode_released(
    tokenizer: Any, prompts: Sequence[str], completions: Sequence[str], max_length: int
) -> Encoded:
    """The released NCE code's tokens: question and solution tokenised separately, each as a text on its own.

    Concatenated, every position scored (``starts`` of 1), as its loss mask
    does with ``loss_on_prefix``; a tokenizer that adds a BOS adds one before
    each part, as LLaMA's does in the released code. Cut at ``max_length``.
    """
    from curator.lm.scoring import warn_truncated

    questions, solutions = tokenizer(list(prompts))["input_ids"], tokenizer(list(completions))["input_ids"]
    full = [q + s for q, s in zip(questions, solutions, strict=True)]
    truncated = np.array([len(ids) > max_length for ids in full], dtype=bool)
    if truncated.any():
        full = [ids[:max_length] for ids in full]
        warn_truncated(int(truncated.sum()), len(full), max_length)
    return Encoded(full, [1] * len(full), truncated)


def mean_kl(
    n: LoadedModel,
    p: LoadedModel,
    encoded: Encoded,
    *,
    smoothing: float = 0.0,
    through_end: bool = False,
    token_budget: int | None = None,
    logit_budget: int | None = None,
) -> np.ndarray:
    """``mean_t KL(N(.|t) || P(.|t))`` over each sample's scored span, in input order.

    ``smoothing`` ε gives ``Σ_v (N + ε)(ln(N + ε) − ln P)``, the released
    code's KL; ``through_end`` also scores the last position (its loss mask
    covers every token). A sample with no scored token gets 0: nothing tells
    the models apart there.
    """
    import torch

    out = np.zeros(len(encoded.ids), dtype=np.float64)
    # Each chunk holds two log-softmaxes and their difference: share the budget.
    chunk_budget = max(1, (logit_budget or default_logit_budget(n.device)) // 3)
    with torch.inference_mode():
        for order, ids, mask in padded_batches(n, encoded.ids, token_budget):
            starts = torch.as_tensor([encoded.starts[i] for i in order], device=ids.device)
            rows, positions = span_positions(mask, starts, through_end=through_end)
            hidden_n, net_n = _hidden(n, ids, mask, rows, positions)
            hidden_p, net_p = _hidden(p, ids, mask, rows, positions)
            if net_n.vocab_size != net_p.vocab_size:
                raise CuratorError(
                    f"nce_kl: the two models' vocabularies differ ({net_n.vocab_size} and {net_p.vocab_size} "
                    f"tokens); N and P must share one tokenizer"
                )
            token_kl = torch.empty(rows.shape, dtype=torch.float32, device=ids.device)
            chunks = zip(
                net_n.log_softmax_chunks(hidden_n, chunk_budget),
                net_p.log_softmax_chunks(hidden_p, chunk_budget),
                strict=True,
            )
            for (part, log_n), (_, log_p) in chunks:
                if smoothing:
                    smoothed = log_n.exp_().add_(smoothing)
                    token_kl[part] = (smoothed * (smoothed.log() - log_p)).sum(-1)
                else:
                    diff = log_n - log_p
                    token_kl[part] = (log_n.exp_() * diff).sum(-1)
            sums = torch.zeros(len(order), dtype=torch.float64, device=ids.device).index_add_(
                0, rows, token_kl.double()
            )
            counts = torch.bincount(rows, minlength=len(order)).clamp(min=1)
            out[order] = (sums / counts).cpu().numpy()
    return out


def _hidden(
    lm: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor
) -> tuple[torch.Tensor, Network]:
    """The hidden states of ``lm`` at the scored positions, with its adapter switched on.

    The head runs later, outside the adapter switch, which is right only when
    the adapters leave the head alone (LoRA on the attention and MLP
    projections, the usual targets): an adapted head is refused.
    """
    with lm.active() as model:
        net = Network.of(model)
        if hasattr(net.head, "lora_A"):
            raise CuratorError("nce_kl: an adapter that changes the output head is not supported; merge it first")
        return net.hidden(ids, mask)[rows, positions], net
