"""How much memory there is, and how much a model's work will take, estimated from its shape.

A 135M-parameter model fine-tuned with 8,192-token micro-batches in fp32 on a
CPU holds about 18 GB of activations: the memory a run needs is set by its
token budget and the model's shape far more than by its parameter count. So
every command that runs a model asks this module two questions before it
starts: how many bytes may this process still take (:func:`available_memory`:
the cgroup limit, ``MemAvailable``, ``CURATOR_MEMORY_LIMIT`` or the free GPU
memory, whichever is least), and how many bytes does one token cost
(:class:`ModelShape` and the per-token estimates below). Token budgets are
then chosen to fit, and a budget the user set that cannot fit is refused with
one line before the machine runs out, rather than killed by it.

The estimates count the tensors that are alive at the peak, term by term
(what autograd saves per decoder layer, attention's mask and KV cache, the
chunked output head), for transformers' Llama-style decoders with sdpa or
eager attention; they are meant as upper bounds within a small factor, and
the tests hold them to measured peaks. On a CPU they only describe resident
memory once freed blocks go back to the system: glibc keeps freed blocks of
up to 32 MiB in its heap, where fragmentation made the resident size of a
checkpointed training step 4x its live tensors (measured on SmolLM2), so
:func:`return_freed_memory` fixes glibc's mmap threshold before heavy work.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curator.errors import CuratorError
from curator.lm.head import base_model

GiB = 1 << 30
SAFETY = 0.8
"""Share of the available memory a plan may fill: the rest covers estimation error and the allocator."""

LIMIT_ENV = "CURATOR_MEMORY_LIMIT"
"""An upper bound on host memory for this process (``6GiB``, ``512M``, bytes), for shared machines."""

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_MMAP_THRESHOLD = -3  # glibc's M_MMAP_THRESHOLD
_released = False


def parse_size(text: str | int, what: str = LIMIT_ENV) -> int:
    """Bytes from ``6GiB``, ``6G``, ``512MB``, ``1.5g`` or a plain number of bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text).lower())
    if not match:
        raise CuratorError(f"{what}: expected a size such as 6GiB or 512M, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def format_gib(size: float) -> str:
    return f"{size / GiB:.1f} GiB"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _proc_field(path: str, field: str) -> int | None:
    """A ``Field:  N kB`` line of a /proc file, in bytes."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def resident_bytes(field: str = "VmRSS") -> int | None:
    """This process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), from /proc."""
    return _proc_field("/proc/self/status", field)


def cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes left under this process's cgroup memory limit (v2 or v1), None when unlimited or unknown."""
    candidates = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            candidates.append((root / path.lstrip("/"), "memory.max", "memory.current"))
        elif "memory" in controllers.split(","):
            candidates.append((root / "memory" / path.lstrip("/"), "memory.limit_in_bytes", "memory.usage_in_bytes"))
    candidates += [(root, "memory.max", "memory.current"), (root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes")]
    for folder, limit_name, usage_name in candidates:
        limit, usage = _read_int(folder / limit_name), _read_int(folder / usage_name)
        if limit is not None and usage is not None and limit < 1 << 60:
            return max(0, limit - usage)
    return None


def available_memory(device: str = "cpu") -> int:
    """Bytes this process may still allocate on ``device``, the least of every limit that applies.

    On CUDA: the device's free memory. On the host: ``MemAvailable``, the
    cgroup's limit less its usage, and ``CURATOR_MEMORY_LIMIT`` less this
    process's resident size.
    """
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    limits = [_proc_field("/proc/meminfo", "MemAvailable"), cgroup_headroom()]
    configured = os.environ.get(LIMIT_ENV)
    if configured:
        limits.append(max(0, parse_size(configured) - (resident_bytes() or 0)))
    known = [value for value in limits if value is not None]
    return min(known) if known else 8 * GiB


def return_freed_memory() -> None:
    """Make glibc hand freed blocks of 1 MiB and more back to the system at once (CPU runs).

    glibc serves blocks under its dynamic mmap threshold (which climbs to
    32 MiB) from a heap that fragments; a training step's activations then
    stay resident long after they are freed. A fixed threshold costs a page
    fault per large block, which measured within noise of the default on a
    training step. Does nothing where the C library is not glibc.
    """
    global _released
    if _released:
        return
    _released = True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.mallopt(_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder that set its memory per token."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def of(cls, config: Any) -> ModelShape:
        """From a transformers config (the text part of a multimodal one)."""
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        hidden = int(text.hidden_size)
        heads = int(getattr(text, "num_attention_heads", 1) or 1)
        return cls(
            layers=int(text.num_hidden_layers),
            hidden=hidden,
            intermediate=int(getattr(text, "intermediate_size", None) or 4 * hidden),
            heads=heads,
            kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
            head_dim=int(getattr(text, "head_dim", None) or hidden // heads),
            vocab=int(text.vocab_size),
        )

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


def layer_activation_elements(
    shape: ModelShape, *, width: int, attention: str = "sdpa", lora_r: int = 16, lora_dropout: float = 0.0
) -> float:
    """Elements one decoder layer keeps for the backward pass, per token of a LoRA-trained micro-batch.

    ``width`` is the padded row length (attention's mask is ``width`` wide).
    Terms: norms and residual inputs (8h); q, k, v (repeated to every head by
    sdpa and eager, not by flash) and the attention output; the float mask
    row (not for flash); the MLP's gate, activation, up and product (4i);
    each LoRA layer's dropout output (6h + i, when dropout is on) and its
    rank-r projection (7r); eager also keeps the attention probabilities.
    """
    flash = attention.startswith(("flash", "flex"))
    kv = shape.kv_dim if flash else shape.q_dim
    elements = 8 * shape.hidden + 2 * shape.q_dim + 2 * kv + 4 * shape.intermediate + 7 * lora_r
    if not flash:
        elements += width
    if attention == "eager":
        elements += 2 * shape.heads * width
    if lora_dropout > 0:
        elements += 6 * shape.hidden + shape.intermediate
    return float(elements)


def head_chunk_bytes(shape: ModelShape, tokens: int, chunk_logits: int = 1 << 26) -> int:
    """The output head's transient: one chunk of fp32 logits and its softmax (see ``train.losses``)."""
    rows = min(tokens, max(16, chunk_logits // max(shape.vocab, 1)))
    return 2 * rows * shape.vocab * 4


def training_bytes(
    shape: ModelShape,
    tokens: int,
    *,
    width: int,
    checkpointing: bool,
    attention: str = "sdpa",
    lora_r: int = 16,
    lora_dropout: float = 0.0,
    bytes_per_element: int = 4,
) -> int:
    """Estimated peak growth of one training micro-batch of ``tokens`` (padding included).

    Without checkpointing every layer keeps its activations; with it each
    layer keeps only its input and one layer is rebuilt at a time. Either way
    the backward pass holds one more layer's worth of gradients, the
    embeddings and final hidden states stay alive, and the head adds its chunk.
    """
    layer = layer_activation_elements(shape, width=width, attention=attention, lora_r=lora_r, lora_dropout=lora_dropout)
    kept = shape.layers * shape.hidden + layer if checkpointing else shape.layers * layer
    per_token = (kept + layer + 3 * shape.hidden) * bytes_per_element
    return int(tokens * per_token) + head_chunk_bytes(shape, tokens)


def inference_bytes_per_token(shape: ModelShape, *, width: int, bytes_per_element: int = 4) -> int:
    """Peak bytes per token of a forward pass without gradients (scoring, a prefill).

    One layer's intermediates at a time (q, k, v repeated, the MLP's three
    ``i``-wide tensors, residuals), the float mask row, and the final hidden states.
    """
    elements = 6 * shape.hidden + 4 * shape.q_dim + 3 * shape.intermediate + width
    return int(elements * bytes_per_element)


def kv_cache_bytes_per_token(shape: ModelShape, bytes_per_element: int = 4) -> int:
    """Keys and values of every layer for one cached token."""
    return 2 * shape.layers * shape.kv_dim * bytes_per_element


def affordable_tokens(bytes_per_token: float, *, device: str, fixed: int = 0, available: int | None = None) -> int:
    """How many tokens at ``bytes_per_token`` fit in the memory available, after ``fixed`` bytes."""
    room = (available if available is not None else available_memory(device)) * SAFETY - fixed
    return max(0, math.floor(room / max(bytes_per_token, 1.0)))


def inference_token_budget(model: Any, width: int, requested: int | None, default: int, device: str) -> int:
    """Padded tokens per forward pass without gradients: ``requested`` if it fits, else the default capped to fit.

    A budget the user asked for that cannot fit is refused in one line; the
    default shrinks to what fits, down to one sequence of ``width`` tokens.
    """
    inner = base_model(model)
    shape = ModelShape.of(inner.config)
    element = next(inner.parameters()).element_size()
    per_token = inference_bytes_per_token(shape, width=width, bytes_per_element=element)
    available = available_memory(device)
    fits = affordable_tokens(per_token, device=device, fixed=head_chunk_bytes(shape, width), available=available)
    wanted = requested or default
    if wanted <= fits:
        return wanted
    if requested is not None or fits < width:
        tokens = max(requested or 0, width)
        raise CuratorError(
            f"batch_tokens {tokens:,}: a forward pass of {tokens:,} tokens ({width:,} per sequence) needs about "
            f"{format_gib(tokens * per_token)} but {format_gib(available)} is available; "
            + ("lower batch_tokens" if requested is not None and fits >= width else "lower max_length or free memory")
        )
    return fits
