"""A few greedy tokens after each prompt, batched by length.

Enough for a model to write a short verdict (``Score: 7``); generating
candidate rationales at scale is the job of the generation backends. Both
run the same decoding loop (:mod:`curator.lm.decoding`): a KV cache, the
batch's common prefix prefilled once, greedy argmax whatever the model's
``generation_config`` says, and a batch sized to fit the memory available.
"""

from __future__ import annotations

from collections.abc import Sequence

from curator.lm.decoding import Sampling, decode
from curator.lm.loading import LoadedModel


def greedy_continuations(
    lm: LoadedModel,
    sequences: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    token_budget: int | None = None,
) -> list[str]:
    """The decoded greedy continuation of each token sequence, in input order."""
    decoded = decode(lm, sequences, Sampling(max_new_tokens=max_new_tokens), token_budget=token_budget, batch_size=64)
    return [group[0].text for group in decoded]
