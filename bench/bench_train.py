"""Training throughput: ``curator train`` vs HF ``Trainer`` + PEFT with ordinary padded batches.

Same run, same randomly initialised model, same GSM8K rows (question →
human rationale, the real GSM8K length spread), same LoRA configuration, same
loss positions (completion + EOS) and the same real tokens per optimiser step.
Tokens/s counts real (non-padding) input positions per second of optimiser
steps, after a few warm-up steps; the two trainers alternate for ``--rounds``
rounds and the median is reported.

    python bench/bench_train.py                                   # CPU, tiny Llama
    python bench/bench_train.py --device cuda --preset qwen2-1.5b # GPU, bf16, MFU + peak memory
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curator.formats import natural
from curator.testing.tiny import train_tokenizer
from curator.train import TrainConfig, run_train
from curator.train.data import encode_examples

ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"

PRESETS = {
    # ~3.5M parameters: big enough that matmuls, not Python, dominate a CPU step.
    "tiny": dict(
        model_type="llama",
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=4096,
    ),
    # Qwen2.5-1.5B's shape, randomly initialised (no hub): large vocabulary, GQA.
    "qwen2-1.5b": dict(
        model_type="qwen2",
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
        rope_theta=1e6,
    ),
}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def gsm8k_rows(limit: int) -> list[dict]:
    rows = []
    for i, line in enumerate(GSM8K.open()):
        if i >= limit:
            break
        item = json.loads(line)
        steps, answer = item["answer"].rsplit("####", 1)
        rationale = re.sub(r"<<[^>]*>>", "", steps).strip() + f" The answer is {answer.strip()}."
        rows.append({"id": f"q{i}", "question": item["question"], "rationale": rationale})
    return rows


def build_model(folder: Path, preset: str, rows: list[dict], dtype: torch.dtype):
    """Tokenizer trained on the data; model from the preset's config, random weights, saved like a hub model."""
    from transformers import AutoConfig, AutoModelForCausalLM

    texts = [f"Q: {r['question']}\nA: {r['rationale']}" for r in rows]
    tokenizer = train_tokenizer(texts, vocab_size=min(PRESETS[preset]["vocab_size"], 4096))
    settings = dict(PRESETS[preset])
    config = AutoConfig.for_model(
        settings.pop("model_type"), pad_token_id=0, bos_token_id=1, eos_token_id=2, **settings
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=dtype).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return tokenizer


def run_curator(data: Path, model: Path, output: Path, args) -> dict:
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config = TrainConfig(
        data=str(data),
        model=str(model),
        output=str(output),
        max_steps=args.steps,
        batch_tokens=args.batch_tokens,
        lora_r=16,
        lora_alpha=16,
        lr=1e-4,
        log_every=1,
        save_every=0,
        progress=False,
        device=args.device,
        max_length=args.max_length,
    )
    run_train(config)
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    manifest = json.loads((output / "manifest.json").read_text())
    timed = records[args.warmup :]
    tokens = [r["tokens"] - p["tokens"] for p, r in zip(records[args.warmup - 1 :], timed, strict=False)]
    seconds = sum(t / r["tokens_per_s"] for t, r in zip(tokens, timed, strict=True))
    return {
        "tokens_per_s": sum(tokens) / seconds,
        "tokens_per_step": statistics.mean(tokens),
        "peak_gib": _peak(args),
        "packed": manifest["model"]["packed"],
        "attention": manifest["model"]["attention"],
    }


def run_hf(model_dir: Path, tokenizer, rows: list[dict], batch_size: int, output: Path, args) -> dict:
    """HF Trainer + PEFT, random order, each batch padded to its longest row (the ordinary collator)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    examples = [natural(r["question"], r["rationale"]) for r in rows]
    samples, _ = encode_examples(
        examples, np.ones(len(rows)), tokenizer, max_length=args.max_length, loss_on_prompt=False
    )
    # Same token positions as curator's samples; HF shifts labels itself, so labels[i] is token i.
    dataset = [
        {"input_ids": np.append(s.input_ids, s.targets[-1]), "labels": np.append(-100, s.targets)}
        for s in samples
    ]
    pad = tokenizer.pad_token_id

    def collate(items):
        width = max(len(i["input_ids"]) for i in items)
        ids = torch.full((len(items), width), pad)
        labels = torch.full((len(items), width), -100)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for n, item in enumerate(items):
            k = len(item["input_ids"])
            ids[n, :k], labels[n, :k], mask[n, :k] = (
                torch.as_tensor(item["input_ids"]),
                torch.as_tensor(item["labels"]),
                1,
            )
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    class Clock(TrainerCallback):
        """Step-end to step-end, so data loading counts as it does in curator's interval timing."""

        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, *_, **__):
            _sync(args)
            self.ends.append(time.perf_counter())

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(args.device)
    torch.manual_seed(0)
    model = get_peft_model(
        base,
        LoraConfig(
            r=16, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
    )
    clock = Clock()
    counted = []
    inner = collate

    def counting(items):
        batch = inner(items)
        counted.append(
            int(batch["attention_mask"].sum()) - len(items)
        )  # positions that predict, like curator
        return batch

    training = TrainingArguments(
        output_dir=str(output),
        max_steps=args.steps,
        per_device_train_batch_size=batch_size,
        learning_rate=1e-4,
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        bf16=args.device == "cuda",
        use_cpu=args.device == "cpu",
        dataloader_num_workers=0,
        seed=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    Trainer(
        model=model, args=training, train_dataset=dataset, data_collator=counting, callbacks=[clock]
    ).train()
    tokens = counted[args.warmup : args.steps]
    seconds = clock.ends[args.steps - 1] - clock.ends[args.warmup - 1]
    return {
        "tokens_per_s": sum(tokens) / seconds,
        "tokens_per_step": statistics.mean(tokens),
        "peak_gib": _peak(args),
    }


def _sync(args) -> None:
    if args.device == "cuda":
        torch.cuda.synchronize()


def _peak(args) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None


def mfu(tokens_per_s: float, model_dir: Path, rows_len: float) -> float | None:
    """Model FLOPs utilisation for LoRA: forward 2N + input-gradient 2N per token (frozen weights get no
    weight-gradient matmul), plus causal attention; against the GPU's dense bf16 peak."""
    from transformers import AutoConfig

    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    if peak is None:
        return None
    c = AutoConfig.from_pretrained(model_dir)
    head = c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads * head
    per_layer = c.hidden_size * (2 * c.hidden_size + 2 * kv) + 3 * c.hidden_size * c.intermediate_size
    matmul_params = c.num_hidden_layers * per_layer + c.vocab_size * c.hidden_size
    attention = 2 * c.num_hidden_layers * rows_len * c.hidden_size  # QK^T + AV per token, causal half
    return tokens_per_s * 2 * (2 * matmul_params + attention) / (peak * 1e12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = gsm8k_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pq.write_table(pa.Table.from_pylist(rows), tmp / "rows.parquet")
        tokenizer = build_model(tmp / "model", args.preset, rows, torch.bfloat16 if args.device == "cuda" else torch.float32)
        lengths = [len(tokenizer(f"Q: {r['question']}\nA: {r['rationale']}")["input_ids"]) for r in rows]
        print(
            f"{len(rows)} GSM8K rows, tokens per row: mean {np.mean(lengths):.0f}, p10 {np.percentile(lengths, 10):.0f}, "
            f"p90 {np.percentile(lengths, 90):.0f}, max {max(lengths)}; preset {args.preset}, device {args.device}, "
            f"torch threads {torch.get_num_threads()}"
        )
        ours, theirs = [], []
        for round_ in range(args.rounds):
            ours.append(run_curator(tmp / "rows.parquet", tmp / "model", tmp / f"curator{round_}", args))
            batch_size = max(1, round(ours[0]["tokens_per_step"] / np.mean(lengths)))
            theirs.append(run_hf(tmp / "model", tokenizer, rows, batch_size, tmp / f"hf{round_}", args))
            print(
                f"round {round_}: curator {ours[-1]['tokens_per_s']:.0f} tok/s ({ours[-1]['tokens_per_step']:.0f} tok/step), "
                f"HF Trainer {theirs[-1]['tokens_per_s']:.0f} tok/s ({theirs[-1]['tokens_per_step']:.0f} tok/step, "
                f"batch {batch_size})"
            )
        a = statistics.median(r["tokens_per_s"] for r in ours)
        b = statistics.median(r["tokens_per_s"] for r in theirs)
        print(
            f"\ncurator train: {a:.0f} tokens/s (packed: {ours[0]['packed']}, attention: {ours[0]['attention']})"
        )
        print(f"HF Trainer + PEFT, padded: {b:.0f} tokens/s")
        print(f"ratio: {a / b:.2f}x")
        if args.device == "cuda":
            for name, runs, speed in (("curator", ours, a), ("HF", theirs, b)):
                util = mfu(speed, tmp / "model", float(np.mean(lengths)))
                shown = f"{100 * util:.1f}%" if util is not None else "n/a (unknown GPU peak)"
                print(f"{name}: MFU {shown}, peak memory {max(r['peak_gib'] for r in runs):.1f} GiB")


if __name__ == "__main__":
    main()
