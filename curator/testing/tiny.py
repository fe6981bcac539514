"""Tiny models built on the spot, so tests and examples need no model hub.

A byte-level BPE tokenizer is trained in a second on a few hundred lines of
text, and a Llama of a few hundred thousand parameters is initialised from a
config. Both are saved in the Hugging Face layout, so the code under test
loads them exactly as it would load a hub model by path.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


def arithmetic_corpus(lines: int = 400, seed: int = 0) -> list[str]:
    """Short GSM8K-like question/answer lines, for tokenizer training and smoke tests."""
    rng = random.Random(seed)
    names = ["Janet", "Tom", "Ali", "Maria", "Kai", "Lena"]
    things = ["apples", "eggs", "books", "dollars", "marbles", "cookies"]
    out = []
    for _ in range(lines):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        who, what = rng.choice(names), rng.choice(things)
        out.append(
            f"Q: {who} has {a} {what} and buys {b} more. How many {what} does {who} have?\n"
            f"A: {who} has {a} + {b} = {a + b} {what}. The answer is {a + b}."
        )
    return out


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512, *, split_digits: bool = False):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``texts``.

    ``split_digits`` spells every number digit by digit, as Llama 2 and Qwen
    vocabularies do, so code that reads numbers from tokens meets both kinds.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    digits = pre_tokenizers.Digits(individual_digits=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level]) if split_digits else byte_level
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_llama_config(vocab_size: int, **overrides):
    """A LlamaConfig of about 100k parameters (overridable: hidden_size, layers...)."""
    from transformers import LlamaConfig

    settings: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    settings.update(overrides)
    return LlamaConfig(**settings)


def build_tiny_llama(
    path: str | Path,
    *,
    texts: Iterable[str] | None = None,
    vocab_size: int = 512,
    seed: int = 0,
    tokenizer=None,
    **config_overrides,
) -> Path:
    """Save a randomly initialised tiny Llama and its tokenizer under ``path``."""
    import torch
    from transformers import LlamaForCausalLM

    path = Path(path)
    tokenizer = tokenizer or train_tokenizer(texts or arithmetic_corpus(), vocab_size)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(len(tokenizer), **config_overrides))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_classifier(path: str | Path, *, tokenizer=None, seed: int = 0, **config_overrides) -> Path:
    """Save a tiny Llama sequence classifier with one output (a reward model)."""
    import torch
    from transformers import LlamaForSequenceClassification

    path = Path(path)
    tokenizer = tokenizer or train_tokenizer(arithmetic_corpus())
    torch.manual_seed(seed)
    config = tiny_llama_config(len(tokenizer), num_labels=1, **config_overrides)
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_lora(base: str | Path, path: str | Path, *, seed: int = 0, r: int = 4) -> Path:
    """Save a LoRA adapter for the model at ``base`` with random (not zero) weights.

    PEFT starts B at zero, which would make the adapter a no-op; random B
    makes the adapted model really differ from its base, as a trained one would.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = Path(path)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(path))
    return path
