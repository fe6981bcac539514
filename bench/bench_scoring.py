"""Per-sample NLL throughput of the scoring layer against the naive way, same model, same data, same run.

The naive way is what most research code does: fixed-size batches in arrival
order, padded to the longest row, the model's full ``[batch, seq, vocab]``
logits, a full fp32 log-softmax, then a gather. The scoring layer
(:func:`curator.lm.scoring.score_encoded`) sorts by length, batches by a
token budget, and runs the output head only on scored positions, a chunk of
rows at a time. Both score every token of ``Q: {question}\\nA: {rationale}``
(the DS-weight setting) for the GPT-3 GSM8K rationales shipped in
``examples/gsm8k/candidates.jsonl``, tokenised by a BPE trained on them.

    python bench/bench_scoring.py                 # CPU: a small random Llama, 32k vocabulary
    python bench/bench_scoring.py --device cuda   # GPU: a random Llama of 1B size, bf16, with MFU
    python bench/bench_scoring.py --model DIR     # a real model folder (SmolLM2-135M-Instruct: see
                                                  #   python -m curator.testing.smollm2 DIR), its own tokenizer

On a CPU, torch's threads are chosen as the commands choose them
(:func:`curator.lm.threads.choose_threads`; ``OMP_NUM_THREADS`` overrides),
each way's model FLOP/s is reported against this CPU's fp32 GEMM peak,
measured with torch in every round (:func:`measure.gemm_peak_flops`), and
each way's peak resident memory is reported.

Rounds alternate between the two ways so that load from other processes
hits both alike; tokens/s is the median round, the ratio the median of the
per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = ROOT / "examples" / "gsm8k" / "candidates.jsonl"

SIZES = {
    # A small LM whose output head is a real share of the work, as in small models.
    "cpu": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=4, vocab_size=32000),
    # Llama-3.2-1B's shape.
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}


def load_texts(rows: int) -> tuple[list[str], list[str]]:
    with open(CANDIDATES, encoding="utf-8") as handle:
        records = [json.loads(line) for line, _ in zip(handle, range(rows), strict=False)]
    return [f"Q: {r['question']}\nA:" for r in records], [f" {r['rationale']}" for r in records]


def build_model(size: str, device: str, dtype_name: str):
    import torch
    from transformers import LlamaForCausalLM

    from curator.lm.loading import torch_dtype
    from curator.testing.tiny import tiny_llama_config

    settings = dict(SIZES[size])
    vocab = settings.pop("vocab_size")
    torch.manual_seed(0)
    config = tiny_llama_config(vocab, max_position_embeddings=2048, **settings)
    dtype = torch_dtype(dtype_name, device)
    return LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()


def naive_mean_nll(model, encoded, batch_size: int, pad_id: int, device: str) -> np.ndarray:
    """Fixed batches in arrival order, padding, full logits and a full fp32 log-softmax."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(encoded.ids), batch_size):
            rows = encoded.ids[start : start + batch_size]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
            ids, mask = ids.to(device), mask.to(device)
            log_probs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            token_lp = log_probs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1) * mask[:, 1:]
            out.append((-token_lp.sum(1) / mask[:, 1:].sum(1)).double().cpu().numpy())
    return np.concatenate(out)


def flops_per_pass(model, lengths: np.ndarray) -> float:
    """Forward FLOPs to score every token: matmuls (2 per weight per token), causal attention, the head."""
    from measure import attention_flops_per_token, matmul_parameters

    config = model.config
    head = config.hidden_size * config.vocab_size
    body = matmul_parameters(config) - head
    attention = sum(attention_flops_per_token(config, n / 2) * n for n in lengths.astype(np.float64))
    return 2.0 * body * lengths.sum() + attention + 2.0 * head * (lengths - 1).sum()


def timed(fn, device: str) -> float:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="default: cpu on CPU, 1b on GPU")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--rows", type=int, default=None, help="default: 256 on CPU, 4096 on GPU")
    parser.add_argument("--naive-batch", type=int, default=16)
    parser.add_argument("--budgets", default=None, help="token budgets to try, comma-separated (default: the device's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="for MFU; guessed from the GPU name")
    parser.add_argument("--model", default=None, help="a model folder (or hub name) instead of a random Llama")
    args = parser.parse_args()

    import torch
    from measure import gemm_peak_flops, gib, peak_rss

    from curator.lm.loading import LoadedModel, load_causal_lm
    from curator.lm.scoring import default_token_budget, encode, score_encoded
    from curator.testing.tiny import train_tokenizer

    gpu = args.device.startswith("cuda")
    size = args.size or ("1b" if gpu else "cpu")
    rows = args.rows or (4096 if gpu else 256)
    budgets = [int(b) for b in args.budgets.split(",")] if args.budgets else [default_token_budget(args.device)]
    prompts, completions = load_texts(rows)
    if args.model:
        lm = load_causal_lm(args.model, device=args.device, dtype=args.dtype)
        model, tokenizer, size = lm.model, lm.tokenizer, args.model
    else:
        tokenizer = train_tokenizer([p + c for p, c in zip(prompts, completions, strict=True)], vocab_size=4096)
        model = build_model(size, args.device, args.dtype)
        lm = LoadedModel(model, tokenizer, args.device)
    encoded = encode(tokenizer, prompts, completions, span="all", max_length=1024)
    lengths = np.array([len(ids) for ids in encoded.ids])
    tokens = int(lengths.sum())
    if not gpu:
        from curator.lm.threads import choose_threads

        chosen = choose_threads()
        print(f"CPU threads {chosen['threads']} (from {chosen['from']})")
    print(f"device {args.device} ({torch.cuda.get_device_name() if gpu else f'{torch.get_num_threads()} threads'}), "
          f"model {size} {model.dtype}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
          f"vocab {model.config.vocab_size}")
    print(f"{rows} samples, {tokens} tokens, length min/median/max {lengths.min()}/{int(np.median(lengths))}/{lengths.max()}")

    def naive() -> None:
        results["naive"] = naive_mean_nll(model, encoded, args.naive_batch, lm.pad_id, args.device)

    runs = {"naive": naive}
    for budget in budgets:
        runs[f"scoring (budget {budget})"] = lambda b=budget: results.__setitem__(
            "scoring", score_encoded(lm, encoded, token_budget=b).mean_nll
        )
    results: dict[str, np.ndarray] = {}
    rss: dict[str, int] = {}
    for name, fn in runs.items():  # warm-up (kernels, allocator), and each way's peak resident memory
        with peak_rss() as peak_memory:
            fn()
        rss[name] = peak_memory["bytes"]
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    gemm: list[float] = []
    for _ in range(args.rounds):
        if not gpu:
            gemm.append(gemm_peak_flops())
        for name, fn in runs.items():
            seconds[name].append(timed(fn, args.device))
    difference = float(np.max(np.abs(results["naive"] - results["scoring"])))
    print(f"max |mean NLL difference| {difference:.2e}; load average {os.getloadavg()[0]:.1f}")
    if gemm:
        print(f"fp32 GEMM peak (2048^3 torch.mm, best of each round, median): {statistics.median(gemm) / 1e9:.1f} GFLOP/s")
    header = "  MFU" if gpu else "  GFLOP/s  of GEMM peak  peak RSS"
    print(f"{'way':28s} {'tokens/s':>10s} {'vs naive':>9s}" + header)
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if gpu and k in torch.cuda.get_device_name()), None)
    flops = flops_per_pass(model, lengths)
    for name, times in seconds.items():
        rate = tokens / statistics.median(times)
        # Per-round ratios: a round runs both ways back to back, so outside load cancels best.
        ratio = statistics.median(n / t for n, t in zip(seconds["naive"], times, strict=True))
        if gpu:
            extra = f"  {flops / statistics.median(times) / (peak * 1e12):.1%}" if peak else ""
        else:
            achieved = flops / statistics.median(times)
            extra = f"  {achieved / 1e9:7.1f}  {achieved / statistics.median(gemm):11.1%}  {gib(rss[name])}"
        print(f"{name:28s} {rate:10.0f} {ratio:8.2f}x{extra}")


if __name__ == "__main__":
    main()
