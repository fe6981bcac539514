"""Encoding (question, rationale) pairs for a sequence classifier: reward models and rankers.

One function serves the ``reward_model`` filter, the ASC ranker's training
and its scoring in ``curator eval``, so all three see the same tokens: the
model's chat template when it has one (a user turn and an assistant turn),
otherwise the tokenizer's own text-pair encoding.
"""

from __future__ import annotations

from typing import Any


def encode_pairs(tokenizer: Any, questions: list[str], rationales: list[str], max_length: int) -> list[list[int]]:
    """Token ids of each (question, rationale), cut to ``max_length`` with the special tokens kept."""
    from curator.lm.scoring import warn_truncated

    if getattr(tokenizer, "chat_template", None):
        firsts: list[str] = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": q}, {"role": "assistant", "content": r}], tokenize=False
            )
            for q, r in zip(questions, rationales, strict=True)
        ]
        seconds: list[str] | None = None
        options: dict[str, Any] = {"add_special_tokens": False}
    else:
        firsts, seconds, options = questions, rationales, {}

    def encode(rows: list[int], **extra: Any) -> list[list[int]]:
        pairs = [seconds[i] for i in rows] if seconds is not None else None
        return tokenizer([firsts[i] for i in rows], pairs, **options, **extra)["input_ids"]

    sequences = encode(list(range(len(questions))))
    long = [i for i, ids in enumerate(sequences) if len(ids) > max_length]
    if long:
        warn_truncated(len(long), len(sequences), max_length)
        for i, ids in zip(long, encode(long, truncation=True, max_length=max_length), strict=True):
            sequences[i] = ids
    return sequences
