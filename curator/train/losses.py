"""Token losses over selected hidden states, without ever holding ``[tokens, vocab]`` fp32 logits.

The trainer picks the hidden states of the positions that carry loss (prompt
and padding never reach the head) and hands them here. Cross-entropy runs
the head chunk by chunk and computes the gradient in the same pass, the way
fused linear-cross-entropy kernels do: one head matmul forward, two backward,
no recomputation and only ``chunk × vocab`` fp32 logits alive at a time.
Heads that are not a plain bias-free ``Linear`` (a LoRA-wrapped head, a
soft-capped one) take the generic path: chunks under activation
checkpointing, which recomputes each chunk's logits in the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

LOGIT_BUDGET = 1 << 26
"""fp32 logits alive per chunk (elements): 256 MB, about 440 tokens of a 152k vocabulary."""


def chunk_size(vocab: int) -> int:
    return max(16, LOGIT_BUDGET // max(vocab, 1))


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype autocast would use for a matmul here, else the tensor's own."""
    device = tensor.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else tensor.dtype


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """``Σ_i w_i CE(h_i W^T, y_i)`` with gradients computed chunkwise during the forward pass."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, token_weights, dtype):
        chunk = chunk_size(weight.shape[0])
        w_mat = weight.to(dtype)
        grad_hidden = torch.empty_like(hidden)
        need_weight = ctx.needs_input_grad[1]
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        )
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], chunk):
                h = hidden[start : start + chunk].to(dtype)
                y, w = targets[start : start + chunk], token_weights[start : start + chunk].float()
                logits = (h @ w_mat.T).float()
                lse = torch.logsumexp(logits, dim=-1)
                total += ((lse - logits.gather(1, y[:, None]).squeeze(1)) * w).sum()
                # d/dlogits of w·CE is w·(softmax − onehot); reuse the logits buffer for it.
                grad = logits.sub_(lse[:, None]).exp_()
                grad[torch.arange(len(y), device=y.device), y] -= 1
                grad.mul_(w[:, None])
                grad_hidden[start : start + chunk] = (grad.to(dtype) @ w_mat).to(hidden.dtype)
                if grad_weight is not None:
                    grad_weight += grad.T @ h.float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        scaled_weight = None if grad_weight is None else (grad_weight * grad_output).to(ctx.weight_dtype)
        return grad_hidden * grad_output.to(grad_hidden.dtype), scaled_weight, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    head: torch.nn.Module,
    targets: torch.Tensor,
    token_weights: torch.Tensor,
    logits_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Weighted sum of token cross-entropies of ``head(hidden)`` against ``targets`` (fp32 scalar).

    ``logits_fn`` replaces ``head`` for models whose logits are more than a
    linear map (soft-capping); it forces the generic path.
    """
    if logits_fn is None and isinstance(head, torch.nn.Linear) and head.bias is None:
        return _FusedLinearCrossEntropy.apply(
            hidden, head.weight, targets, token_weights, compute_dtype(hidden)
        )
    logits_fn = logits_fn or head

    def chunk_loss(h: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        logits = logits_fn(h).float()
        return (F.cross_entropy(logits, y, reduction="none") * w).sum()

    return _chunked(chunk_loss, hidden, targets, token_weights, vocab=_vocab(head))


def distill_kl(
    hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    student_logits: Callable[[torch.Tensor], torch.Tensor],
    teacher_logits: Callable[[torch.Tensor], torch.Tensor],
    token_weights: torch.Tensor,
    vocab: int,
) -> torch.Tensor:
    """``Σ_i w_i KL(P_i ‖ Q_i)``: teacher P, student Q, per position, chunked and checkpointed.

    KL rather than the soft cross-entropy of the official NCE code: the
    gradient is the same, and the value reads 0 when the student matches.
    """

    def chunk_loss(h: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        log_q = student_logits(h).float().log_softmax(-1)
        with torch.no_grad():
            log_p = teacher_logits(t).float().log_softmax(-1)
        return ((log_p.exp() * (log_p - log_q)).sum(-1) * w).sum()

    return _chunked(chunk_loss, hidden, teacher_hidden, token_weights, vocab=vocab)


def _chunked(fn, hidden: torch.Tensor, *per_token: torch.Tensor, vocab: int) -> torch.Tensor:
    chunk = chunk_size(vocab)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for start in range(0, hidden.shape[0], chunk):
        pieces = [t[start : start + chunk] for t in (hidden, *per_token)]
        total = total + checkpoint(fn, *pieces, use_reentrant=False)
    return total


def _vocab(head: torch.nn.Module) -> int:
    return int(getattr(head, "out_features", 0) or getattr(getattr(head, "weight", None), "shape", [0])[0])
