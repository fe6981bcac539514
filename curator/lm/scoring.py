"""Per-sample log-likelihoods of texts under a causal LM, batched by a token budget.

Three habits keep scoring fast and its memory bounded. Samples are sorted by
length and cut into batches of at most ``token_budget`` padded tokens, so
padding is rare and a long batch cannot run out of memory by surprise;
results go back to input order. The output head runs only on the positions
that are scored, a few rows at a time (at most ``logit_budget`` logits), so a
128k vocabulary never materialises ``[batch, seq, vocab]`` fp32 logits. And
everything runs under ``torch.inference_mode`` with reductions in fp32/fp64
whatever the weight dtype.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from curator.lm.head import base_model, logit_adjustment
from curator.lm.loading import LoadedModel

if TYPE_CHECKING:
    import torch

Span = Literal["completion", "all"]


def default_token_budget(device: str) -> int:
    """Padded tokens per batch: enough to keep a GPU busy; on a CPU, past the per-call overheads."""
    return 32768 if device.startswith("cuda") else 4096


def default_logit_budget(device: str) -> int:
    """Logits held at once by the chunked log-softmax.

    On a CPU a chunk that stays in cache (32 MiB in fp32) is faster than a
    bigger one; a GPU wants large matmuls (256 MiB).
    """
    return 1 << 26 if device.startswith("cuda") else 1 << 23


@dataclass(frozen=True)
class Encoded:
    """Token ids of each sample, where its scored span starts, and whether it was cut."""

    ids: list[list[int]]
    starts: list[int]
    truncated: np.ndarray


@dataclass(frozen=True)
class SequenceScores:
    """Per-sample sums over the scored span, in input order."""

    logprob: np.ndarray
    n_tokens: np.ndarray
    truncated: np.ndarray

    @property
    def mean_nll(self) -> np.ndarray:
        """Mean negative log-likelihood per scored token (NaN where nothing was scored)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_tokens > 0, -self.logprob / self.n_tokens, np.nan)


def encode(
    tokenizer: Any,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    span: Span = "completion",
    max_length: int | None = None,
) -> Encoded:
    """Tokenise ``prompt + completion`` and mark the tokens to score.

    With ``span='completion'`` the scored tokens are those after the longest
    common prefix of the prompt's and the full text's encodings, so a token
    that straddles the boundary counts as prompt. With ``span='all'`` every
    token that has a predecessor is scored (all text tokens when the
    tokenizer adds a BOS). Texts longer than ``max_length`` tokens are cut at
    the end, with a warning.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    full = tokenizer([p + c for p, c in zip(prompts, completions, strict=True)])["input_ids"]
    if span == "all":
        starts = [1] * len(full)
    elif span == "completion":
        unique = list(dict.fromkeys(prompts))
        prompt_ids = dict(zip(unique, tokenizer(unique)["input_ids"], strict=True))
        starts = [max(1, _common_prefix(prompt_ids[p], ids)) for p, ids in zip(prompts, full, strict=True)]
    else:
        raise ValueError(f"span must be 'completion' or 'all', not {span!r}")
    truncated = np.array([max_length is not None and len(ids) > max_length for ids in full], dtype=bool)
    if truncated.any():
        full = [ids[:max_length] for ids in full]
        warn_truncated(int(truncated.sum()), len(full), max_length)
    return Encoded(full, starts, truncated)


def warn_truncated(count: int, total: int, max_length: int | None) -> None:
    """Say how many samples lost tokens, so a too-small ``max_length`` is noticed."""
    warnings.warn(f"{count} of {total} samples truncated to {max_length} tokens", stacklevel=3)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def score_texts(
    lm: LoadedModel,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    span: Span = "completion",
    max_length: int | None = None,
    token_budget: int | None = None,
    logit_budget: int | None = None,
) -> SequenceScores:
    """Sum of log-probabilities, token count and mean NLL of each text's span."""
    encoded = encode(lm.tokenizer, prompts, completions, span=span, max_length=max_length)
    return score_encoded(lm, encoded, token_budget=token_budget, logit_budget=logit_budget)


def score_encoded(
    lm: LoadedModel, encoded: Encoded, *, token_budget: int | None = None, logit_budget: int | None = None
) -> SequenceScores:
    """:func:`score_texts` on sequences already tokenised by :func:`encode`."""
    import torch

    count = len(encoded.ids)
    logprob = np.zeros(count, dtype=np.float64)
    n_tokens = np.zeros(count, dtype=np.int64)
    with torch.inference_mode(), lm.active() as model:
        net = Network.of(model)
        for order, ids, mask in padded_batches(lm, encoded.ids, token_budget):
            starts = torch.as_tensor([encoded.starts[i] for i in order], device=ids.device)
            rows, positions = span_positions(mask, starts)
            hidden = net.hidden(ids, mask)[rows, positions]
            targets = ids[rows, positions + 1]
            token_lp = torch.empty(targets.shape, dtype=torch.float32, device=ids.device)
            for part, log_probs in net.log_softmax_chunks(hidden, logit_budget):
                token_lp[part] = log_probs.gather(1, targets[part, None]).squeeze(1)
            sums = torch.zeros(len(order), dtype=torch.float64, device=ids.device)
            sums.index_add_(0, rows, token_lp.double())
            logprob[order] = sums.cpu().numpy()
            n_tokens[order] = torch.bincount(rows, minlength=len(order)).cpu().numpy()
    return SequenceScores(logprob, n_tokens, encoded.truncated)


def next_token_logprobs(
    lm: LoadedModel,
    sequences: Sequence[Sequence[int]],
    candidates: Sequence[int],
    *,
    last: int = 1,
    token_budget: int | None = None,
) -> np.ndarray:
    """Log-probabilities of ``candidates`` as the next token after each of the last ``last`` positions.

    Shape ``[samples, last, candidates]``, in input order; the log-softmax is
    over the whole vocabulary, computed for those positions only.
    """
    import torch

    out = np.zeros((len(sequences), last, len(candidates)), dtype=np.float64)
    with torch.inference_mode(), lm.active() as model:
        net = Network.of(model)
        wanted = torch.as_tensor(list(candidates), device=lm.device)
        for order, ids, mask in padded_batches(lm, sequences, token_budget):
            lengths = mask.sum(1)
            offsets = torch.arange(-last, 0, device=ids.device)
            positions = (lengths[:, None] + offsets).clamp(min=0).reshape(-1)
            rows = torch.arange(len(order), device=ids.device).repeat_interleave(last)
            hidden = net.hidden(ids, mask)[rows, positions]
            picked = torch.cat([lp[:, wanted] for _, lp in net.log_softmax_chunks(hidden, None)])
            out[order] = picked.double().reshape(len(order), last, -1).cpu().numpy()
    return out


def classifier_logits(
    lm: LoadedModel, sequences: Sequence[Sequence[int]], *, token_budget: int | None = None
) -> np.ndarray:
    """The logits of a sequence-classification model, ``[samples, labels]``, in input order."""
    import torch

    out: np.ndarray | None = None
    with torch.inference_mode(), lm.active() as model:
        for order, ids, mask in padded_batches(lm, sequences, token_budget):
            logits = model(input_ids=ids, attention_mask=mask).logits.double().cpu().numpy()
            if out is None:
                out = np.zeros((len(sequences), logits.shape[1]), dtype=np.float64)
            out[order] = logits
    return np.zeros((0, 1)) if out is None else out


# -- the pieces shared with kl.py and generation.py ------------------------------


def length_batches(lengths: Sequence[int], token_budget: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length, longest first.

    A batch pads to its first (longest) sample, so it holds as many samples as
    fit in ``token_budget`` at that length, and always at least one. Longest
    first means an out-of-memory error, if any, comes at the start.
    """
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches = []
    start = 0
    while start < len(order):
        width = max(1, int(lengths[order[start]]))
        size = max(1, token_budget // width)
        batches.append(order[start : start + size])
        start += size
    return batches


def padded_batches(
    lm: LoadedModel,
    sequences: Sequence[Sequence[int]],
    token_budget: int | None,
    *,
    left: bool = False,
    extra: int = 0,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """``(indices, input_ids, attention_mask)`` per batch, on the model's device.

    Right-padded for scoring, left-padded (``left=True``) for generation;
    ``extra`` tokens per sample (to be generated) count against the budget.
    The default budget shrinks to what the memory available holds (see
    :func:`curator.lm.memory.inference_token_budget`); a budget given that
    cannot fit is refused before the first batch.
    Each batch the caller is done with is reported to the build's progress bar.
    """
    import torch

    from curator.lm.memory import inference_token_budget
    from curator.progress import report_rows

    if not sequences:
        return
    lengths = [len(s) + extra for s in sequences]
    budget = inference_token_budget(lm.model, max(lengths), token_budget, default_token_budget(lm.device), lm.device)
    for order in length_batches(lengths, budget):
        width = max(1, max(len(sequences[i]) for i in order))
        ids = torch.full((len(order), width), lm.pad_id, dtype=torch.long)
        mask = torch.zeros((len(order), width), dtype=torch.long)
        for row, i in enumerate(order):
            n = len(sequences[i])
            cols = slice(width - n, width) if left else slice(0, n)
            ids[row, cols] = torch.as_tensor(sequences[i], dtype=torch.long)
            mask[row, cols] = 1
        yield order, ids.to(lm.device), mask.to(lm.device)
        report_rows(len(order))


def span_positions(
    mask: torch.Tensor, starts: torch.Tensor, *, through_end: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, position) of every hidden state that predicts a scored token.

    The token at ``t`` is predicted at ``t - 1``; a row scores tokens from its
    start to its last real token. ``through_end`` also takes the last real
    position, whose prediction is of whatever would follow the text.
    """
    import torch

    lengths = mask.sum(1, keepdim=True)
    pos = torch.arange(mask.shape[1], device=mask.device)[None, :]
    predicting = (pos >= starts[:, None] - 1) & (pos < lengths - (0 if through_end else 1))
    rows, positions = predicting.nonzero(as_tuple=True)
    return rows, positions


@dataclass
class Network:
    """A causal LM split into its body (hidden states) and its output head.

    Running the head separately is what lets the scorer compute logits only
    for the positions it needs, in chunks. What some architectures do after
    the head (:mod:`curator.lm.head`) is applied here too, so the
    log-probabilities equal the model's own.
    """

    body: Any
    head: Any
    transform: Callable[[torch.Tensor], torch.Tensor] | None
    vocab_size: int

    @classmethod
    def of(cls, model: Any) -> Network:
        inner = base_model(model)
        head = inner.get_output_embeddings()
        return cls(inner.get_decoder(), head, logit_adjustment(inner), int(head.weight.shape[0]))

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``[batch, seq, hidden]`` (after the last norm) of right-padded rows.

        No attention mask is passed: with right padding, causal attention never
        lets a real token see the padding after it and positions start at 0 as
        they would alone, so the real positions' states are exactly the same
        (tested), while sdpa takes its unmasked causal kernel: 1.3-1.7x faster
        on SmolLM2 on a CPU than building and applying a padding mask.
        """
        if bool(((mask[:, 0] == 0) & (mask.sum(1) > 0)).any()):
            raise ValueError("Network.hidden takes right-padded rows (every row starts with a real token)")
        return self.body(input_ids=ids, use_cache=False).last_hidden_state

    def log_softmax_chunks(
        self, hidden: torch.Tensor, logit_budget: int | None
    ) -> Iterator[tuple[slice, torch.Tensor]]:
        """fp32 log-probabilities over the vocabulary for row chunks of ``hidden [rows, hidden]``.

        A chunk holds at most ``logit_budget`` logits (default: the device's).
        """
        import torch

        budget = logit_budget or default_logit_budget(hidden.device.type)
        step = max(1, budget // self.vocab_size)
        for start in range(0, hidden.shape[0], step):
            part = slice(start, start + step)
            logits = self.head(hidden[part]).float()
            if self.transform is not None:
                logits = self.transform(logits)
            yield part, torch.log_softmax(logits, dim=-1)
