"""A few greedy tokens after each prompt, batched by length.

Enough for a model to write a short verdict (``Score: 7``); generating
candidate rationales at scale is the job of the generation backends.
"""

from __future__ import annotations

from collections.abc import Sequence

from curator.lm.loading import LoadedModel
from curator.lm.scoring import padded_batches


def greedy_continuations(
    lm: LoadedModel,
    sequences: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    token_budget: int | None = None,
) -> list[str]:
    """The decoded greedy continuation of each token sequence, in input order."""
    import torch

    out = [""] * len(sequences)
    with torch.inference_mode(), lm.active() as model:
        for order, ids, mask in padded_batches(lm, sequences, token_budget, left=True, extra=max_new_tokens):
            generated = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=lm.pad_id,
            )
            texts = lm.tokenizer.batch_decode(generated[:, ids.shape[1] :], skip_special_tokens=True)
            for i, text in zip(order, texts, strict=True):
                out[i] = text
    return out
