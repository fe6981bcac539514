"""Train the small reference LM that ``recipe.yaml`` scores with (its ``ds_weight`` step), offline, in about a minute.

IWSI's DS weight needs a base model M that has seen human-written solutions,
so that "as surprising to M as human data" means something. This script
stands one up without a download: a byte-level BPE tokenizer and a Llama of
a few hundred thousand parameters, trained with a plain torch loop on the
GSM8K human solutions shipped beside it (``human_solutions.jsonl``, in the
same ``Q: …\\nA: …`` format the filter scores). The validation set
(``valid.jsonl``) is held out and its loss printed at the end.

    python examples/gsm8k/reference_lm.py            # writes examples/gsm8k/reference-lm/
    python examples/gsm8k/reference_lm.py --force    # rebuild
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def read_texts(path: Path) -> list[str]:
    """``Q: {question}\\nA: {rationale}``, the template ``ds_weight`` scores."""
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [f"Q: {r['question']}\nA: {r['rationale']}" for r in rows]


def batches(encoded: list[list[int]], batch_size: int, steps: int, seed: int) -> Iterator[tuple[Any, Any, Any]]:
    """Shuffled batches as (input_ids, attention_mask, labels), padding ignored by the loss."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            order += torch.randperm(len(encoded), generator=generator).tolist()
        rows, order = [encoded[i] for i in order[:batch_size]], order[batch_size:]
        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        yield ids, mask, ids.masked_fill(mask == 0, -100)


def train(output: Path, *, steps: int, batch_size: int, max_length: int, seed: int) -> None:
    import torch
    from transformers import LlamaForCausalLM

    from curator.testing.tiny import tiny_llama_config, train_tokenizer

    started = time.perf_counter()
    texts = read_texts(HERE / "human_solutions.jsonl")
    tokenizer = train_tokenizer(texts, vocab_size=1024)
    encoded = [ids[:max_length] for ids in tokenizer(texts)["input_ids"]]
    torch.manual_seed(seed)
    config = tiny_llama_config(
        len(tokenizer), hidden_size=64, intermediate_size=192, num_attention_heads=4, max_position_embeddings=max_length
    )
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    # 20 warm-up steps, then cosine decay to zero.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    model.train()
    for step, (ids, mask, labels) in enumerate(batches(encoded, batch_size, steps, seed), 1):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == steps:
            print(f"step {step}/{steps}  loss {loss.item():.3f}  {time.perf_counter() - started:.0f}s", flush=True)
    model.eval()
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    print(f"held-out validation NLL per token: {validation_loss(output):.3f}")
    print(f"saved {sum(p.numel() for p in model.parameters()):,} parameters to {output} "
          f"in {time.perf_counter() - started:.0f}s")


def validation_loss(model_dir: Path) -> float:
    """L_v as ``ds_weight`` computes it, through the library's own scoring layer."""
    from curator.formats import natural_texts
    from curator.lm.loading import load_causal_lm
    from curator.lm.scoring import score_texts
    from curator_plugins.ds_weight import read_validation_set

    lm = load_causal_lm(str(model_dir), device="cpu")
    prompts, completions = natural_texts(*read_validation_set(HERE / "valid.jsonl"))
    return float(score_texts(lm, prompts, completions, span="all", max_length=400).mean_nll.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=HERE / "reference-lm")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even when the output folder exists")
    args = parser.parse_args()
    if (args.output / "config.json").exists() and not args.force:
        print(f"{args.output} already exists (use --force to rebuild)")
        return
    train(args.output, steps=args.steps, batch_size=args.batch_size, max_length=args.max_length, seed=args.seed)


if __name__ == "__main__":
    main()
