"""Language models for scoring: loading, batched log-likelihoods, KL, short generations.

The modules split by what they need, so that importing this package costs
nothing: :mod:`curator.lm.options` (no torch) holds the recipe options that
model-backed filters share; :mod:`curator.lm.loading` loads models once per
build; :mod:`curator.lm.scoring` turns texts into per-sample log-likelihoods
with sorted, token-budgeted batches and chunked log-softmax;
:mod:`curator.lm.kl` compares two models the same way;
:mod:`curator.lm.generation` decodes a few greedy tokens.
"""

from __future__ import annotations
