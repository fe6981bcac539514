"""Language models for scoring: loading, batched log-likelihoods, KL, short generations.

The modules split by what they need, so that importing this package costs
nothing: :mod:`curator.lm.options` (no torch) holds the recipe options that
model-backed filters share; :mod:`curator.lm.loading` loads models once per
build; :mod:`curator.lm.scoring` turns texts into per-sample log-likelihoods
with sorted, token-budgeted batches and chunked log-softmax;
:mod:`curator.lm.kl` compares two models the same way;
:mod:`curator.lm.decoding` is the KV-cached sampling loop (shared prefill,
finished rows dropped, our sampling settings only) behind the transformers
backend and :mod:`curator.lm.generation`'s few greedy tokens;
:mod:`curator.lm.memory` says how much memory there is and what a model's
work takes per token, so every batch is sized to fit.
"""

from __future__ import annotations
