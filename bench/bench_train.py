"""Training throughput: ``curator train`` vs HF ``Trainer`` + PEFT with ordinary padded batches (and TRL).

Same run, same model, same GSM8K rows (question → human rationale, the real
GSM8K length spread), same LoRA configuration, same loss positions
(completion + EOS) and the same real tokens per optimiser step. Tokens/s
counts real (non-padding) input positions per second of optimiser steps,
after a few warm-up steps; the trainers alternate for ``--rounds`` rounds and
the median is reported.

    python bench/bench_train.py                                   # CPU, tiny random Llama
    python bench/bench_train.py --device cuda --preset qwen2-1.5b # GPU, bf16, MFU + peak memory
    python bench/bench_train.py --model DIR --trl                 # a real model folder, also against TRL

``--model`` trains a real model folder with its own tokenizer (SmolLM2:
``python -m curator.testing.smollm2 DIR``). ``--trl`` adds TRL's
``SFTTrainer`` with padding-free packing (``packing=True,
padding_free=True``, one packed row of the step's tokens, completion-only
loss; ``pip install 'rationale-curator[bench]'``). On a CPU every trainer's
achieved FLOP/s is also given as a share of this CPU's fp32 GEMM peak
(measured with torch in the same run), and its peak resident memory. All
trainers run in one process after :func:`curator.lm.memory.return_freed_memory`
(which ``curator train`` applies on a CPU), so they share the allocator's settings.
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
from curator.lm.memory import return_freed_memory
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


LORA = dict(r=16, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")


class Clock:
    """Step-end to step-end times (a ``TrainerCallback``), so data loading counts as in curator's timing."""

    def __new__(cls, args):
        from transformers import TrainerCallback

        class _Clock(TrainerCallback):
            def __init__(self):
                self.ends: list[float] = []

            def on_step_end(self, *_, **__):
                _sync(args)
                self.ends.append(time.perf_counter())

        return _Clock()


def trainer_arguments(args, output: Path) -> dict:
    """The settings HF Trainer and TRL runs share: same schedule, no logging or saving in the timed steps."""
    return dict(
        output_dir=str(output),
        max_steps=args.steps,
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
        disable_tqdm=True,
    )


def run_trl(model_dir: Path, rows: list[dict], step_tokens: int, output: Path, args) -> dict:
    """TRL's SFTTrainer: prompt/completion rows, completion-only loss, padding-free packing into one row per step."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    examples = [natural(r["question"], r["rationale"]) for r in rows]
    dataset = Dataset.from_list([{"prompt": e.prompt, "completion": e.completion} for e in examples])
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(args.device)
    config = SFTConfig(
        **trainer_arguments(args, output),
        per_device_train_batch_size=1,
        max_length=step_tokens,
        packing=True,
        padding_free=True,
        completion_only_loss=True,
    )
    torch.manual_seed(0)
    clock = Clock(args)
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, peft_config=LoraConfig(**LORA), callbacks=[clock]
    )
    counted: list[int] = []
    inner = trainer.data_collator

    def counting(items):
        batch = inner(items)
        counted.append(int(batch["input_ids"].numel()) - len(items))  # positions that predict, like curator
        return batch

    trainer.data_collator = counting
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    tokens = counted[args.warmup : args.steps]
    seconds = clock.ends[args.steps - 1] - clock.ends[args.warmup - 1]
    return {"tokens_per_s": sum(tokens) / seconds, "tokens_per_step": statistics.mean(tokens), "peak_gib": _peak(args)}


def run_hf(model_dir: Path, tokenizer, rows: list[dict], batch_size: int, output: Path, args) -> dict:
    """HF Trainer + PEFT, random order, each batch padded to its longest row (the ordinary collator)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

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

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(args.device)
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(**LORA))
    clock = Clock(args)
    counted = []
    inner = collate

    def counting(items):
        batch = inner(items)
        counted.append(
            int(batch["attention_mask"].sum()) - len(items)
        )  # positions that predict, like curator
        return batch

    training = TrainingArguments(
        **trainer_arguments(args, output), per_device_train_batch_size=batch_size, remove_unused_columns=False
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


def flops_per_token(model_dir: Path, mean_length: float, loss_share: float) -> float:
    """LoRA training FLOPs per real token: forward 2N + input gradients 2N over the decoder's matmuls
    (frozen weights need no weight-gradient matmul), the head only where there is loss, and causal
    attention forward and backward (3x its forward)."""
    from measure import attention_flops_per_token, matmul_parameters
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_dir)
    head = c.vocab_size * c.hidden_size
    body = matmul_parameters(c) - head
    return 4.0 * body + 4.0 * head * loss_share + 3.0 * attention_flops_per_token(c, mean_length / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--model", type=Path, default=None, help="a real model folder instead of a random preset")
    parser.add_argument("--trl", action="store_true", help="also TRL's SFTTrainer with padding-free packing")
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
    from measure import gemm_peak_flops, gib, peak_rss
    from transformers import AutoTokenizer

    if args.device == "cpu":
        return_freed_memory()
    rows = gsm8k_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pq.write_table(pa.Table.from_pylist(rows), tmp / "rows.parquet")
        if args.model:
            model_dir, tokenizer, name = args.model, AutoTokenizer.from_pretrained(args.model), str(args.model)
        else:
            model_dir, name = tmp / "model", f"preset {args.preset}"
            tokenizer = build_model(model_dir, args.preset, rows, torch.bfloat16 if args.device == "cuda" else torch.float32)
        examples = [natural(r["question"], r["rationale"]) for r in rows]
        samples, _ = encode_examples(examples, np.ones(len(rows)), tokenizer, max_length=args.max_length, loss_on_prompt=False)
        lengths = [s.length for s in samples]
        loss_share = sum(s.count for s in samples) / sum(lengths)
        print(
            f"{len(rows)} GSM8K rows, tokens per row: mean {np.mean(lengths):.0f}, p10 {np.percentile(lengths, 10):.0f}, "
            f"p90 {np.percentile(lengths, 90):.0f}, max {max(lengths)}; {name}, device {args.device}, "
            f"torch threads {torch.get_num_threads()}"
        )
        runs: dict[str, list[dict]] = {"curator train": [], "HF Trainer + PEFT, padded": []}
        if args.trl:
            runs["TRL SFTTrainer, padding-free packing"] = []
        gemm: list[float] = []
        for round_ in range(args.rounds):
            if args.device == "cpu":
                gemm.append(gemm_peak_flops())
            trainers = {
                "curator train": lambda n=round_: run_curator(tmp / "rows.parquet", model_dir, tmp / f"curator{n}", args),
                "HF Trainer + PEFT, padded": lambda n=round_: run_hf(
                    model_dir, tokenizer, rows, max(1, round(runs["curator train"][0]["tokens_per_step"] / np.mean(lengths))),
                    tmp / f"hf{n}", args,
                ),
                "TRL SFTTrainer, padding-free packing": lambda n=round_: run_trl(
                    model_dir, rows, round(runs["curator train"][0]["tokens_per_step"]), tmp / f"trl{n}", args
                ),
            }
            for label in runs:
                with peak_rss() as peak:
                    result = trainers[label]()
                result["peak_rss"] = peak["bytes"]
                runs[label].append(result)
            print(f"round {round_}: " + ", ".join(
                f"{label} {r[-1]['tokens_per_s']:.0f} tok/s ({r[-1]['tokens_per_step']:.0f} tok/step)" for label, r in runs.items()
            ))
        ours = runs["curator train"]
        print(f"\ncurator train: packed {ours[0]['packed']}, attention {ours[0]['attention']}")
        if gemm:
            print(f"fp32 GEMM peak (2048^3 torch.mm, best per round, median): {statistics.median(gemm) / 1e9:.1f} GFLOP/s")
        per_token = flops_per_token(model_dir, float(np.mean(lengths)), loss_share)
        speed = {label: statistics.median(r["tokens_per_s"] for r in results) for label, results in runs.items()}
        print(f"{'trainer':40s} {'tokens/s':>9s} {'curator/this':>13s} {'GFLOP/s':>8s} {'of peak':>8s} {'peak RSS':>10s}")
        for label, results in runs.items():
            achieved = speed[label] * per_token
            share = f"{achieved / statistics.median(gemm):8.1%}" if gemm else "     n/a"
            rss = gib(max(r["peak_rss"] for r in results))
            print(f"{label:40s} {speed[label]:9.0f} {speed['curator train'] / speed[label]:12.2f}x "
                  f"{achieved / 1e9:8.1f} {share} {rss:>10s}")
        if args.device == "cuda":
            for label, results in runs.items():
                util = mfu(speed[label], model_dir, float(np.mean(lengths)))
                shown = f"{100 * util:.1f}%" if util is not None else "n/a (unknown GPU peak)"
                print(f"{label}: MFU {shown}, peak memory {max(r['peak_gib'] for r in results):.1f} GiB")


if __name__ == "__main__":
    main()
