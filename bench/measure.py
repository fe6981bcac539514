"""What the benchmarks measure besides their own timings: this CPU's GEMM peak and per-way peak RSS.

The GEMM peak is the physical limit the achieved FLOP/s are compared with:
the best of several fp32 square matmuls through torch, in the same process
and at the same moment as the run it normalises, so outside load moves both.
Peak RSS is the process's ``VmHWM`` after resetting it (``/proc/self/clear_refs``),
so several ways run in one process each get their own peak.
"""

from __future__ import annotations

import time
from contextlib import contextmanager


def gemm_peak_flops(size: int = 2048, seconds: float = 2.0, dtype: str = "float32") -> float:
    """FLOP/s of the fastest ``size x size`` matmul (2·size³ FLOPs each) run for about ``seconds``."""
    import torch

    a = torch.randn(size, size, dtype=getattr(torch, dtype))
    b = torch.randn(size, size, dtype=getattr(torch, dtype))
    out = torch.empty(size, size, dtype=a.dtype)
    torch.mm(a, b, out=out)  # warm up
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(field + ":"))


@contextmanager
def peak_rss():
    """``with peak_rss() as peak: ...`` then ``peak['bytes']``: the highest resident size inside the block."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # VmHWM := VmRSS
    except OSError:
        pass
    result = {"bytes": 0}
    try:
        yield result
    finally:
        result["bytes"] = _status("VmHWM")


def gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB"


def matmul_parameters(config) -> int:
    """Weights that take part in a matmul per token: every decoder projection and the output head."""
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    q, kv = c.num_attention_heads * head_dim, (c.num_key_value_heads or c.num_attention_heads) * head_dim
    per_layer = c.hidden_size * (2 * q + 2 * kv) + 3 * c.hidden_size * c.intermediate_size
    return c.num_hidden_layers * per_layer + c.vocab_size * c.hidden_size


def attention_flops_per_token(config, context: float) -> float:
    """QKᵀ and AV of one token against ``context`` earlier tokens, every layer (forward)."""
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return 4.0 * c.num_hidden_layers * c.num_attention_heads * head_dim * context
