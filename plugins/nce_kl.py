"""``nce_kl`` (Dust into Gold, NCE): weight each rationale by how far N strays from P on it.

P is the model trained on positives (or the base with a positive adapter), N
the one trained on negatives (a second model, or a negative adapter on the
same base, held once in memory). Teacher-forced on the rationale after
``Q: {question}\\nA:``, ``KL_t = Σ_v N(v|t) (ln N(v|t) − ln P(v|t))`` and
``nce_beta = tanh(mean_t KL_t)``. Nothing is dropped: ``weight = 0.5 +
nce_beta``, in [0.5, 1.5), which the trainer applies to the sample's token losses.

Dust into Gold's P is the NAT model: ``positive_adapter: nat/`` (a NAT
folder) with ``negative_adapter: neg/``; when ``neg/`` is the adapter NAT's
negative branch was copied from, N is the NAT model with that branch alone,
one base in memory, as the released code switches its layers' mode.

``span`` says where the mean over t runs:

- ``completion`` (the default): the rationale's tokens only, the text
  tokenised as one. The question is the same for every candidate and the
  trainer learns the completion only (its default), so the question's
  positions would only dilute how far N and P part on the rationale.
- ``all``: the released code's β. Every position of its loss mask (question
  and rationale, ``loss_on_prefix``) including the last, the two parts
  tokenised separately, and N smoothed as ``N + 1e-7`` inside the KL. Use it
  with adapters trained with ``--loss-on-prompt``, as the released ones were.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from curator import CuratorError, Filter, FilterContext, RegisterFilter, Selection, hookimpl
from curator.formats import natural_texts
from curator.lm.options import ModelOptions

SPANS = ("completion", "all")


@dataclass(kw_only=True)
class NceKL(ModelOptions, Filter):
    name = "nce_kl"
    columns = ("nce_beta",)
    scope = "row"
    score_meaning = {"nce_beta": "higher"}  # drops nothing: a higher beta weights the row up
    dependencies = ("torch", "transformers")
    extra = "lm"

    positive_adapter: str | None = None
    negative_adapter: str | None = None
    negative_model: str | None = None
    max_length: int = 1024
    span: str = "completion"

    def validate(self, step: str) -> None:
        self.check_model_options(step)
        if self.span not in SPANS:
            raise CuratorError(
                f"filter step '{step}': option 'span' must be one of {', '.join(SPANS)}, got {self.span!r}"
            )
        if (self.negative_adapter is None) == (self.negative_model is None):
            raise CuratorError(
                f"filter step '{step}': give exactly one of 'negative_adapter' (on 'model') and 'negative_model'"
            )
        if self.negative_model is not None and self.positive_adapter is not None:
            raise CuratorError(
                f"filter step '{step}': 'positive_adapter' needs 'negative_adapter' on the same base model"
            )

    def score(self, batch: pa.RecordBatch, context: FilterContext) -> Mapping[str, Any]:
        from curator.lm.kl import RELEASED_SMOOTHING, encode_released, mean_kl
        from curator.lm.scoring import encode

        if self.negative_adapter is not None:
            p, n = self.adapter_pair(context, self.positive_adapter, self.negative_adapter)
        else:
            p, n = self.causal_lm(context), self.causal_lm(context, name=self.negative_model)
        prompts, completions = natural_texts(
            batch.column("question").to_pylist(), batch.column("rationale").to_pylist()
        )
        if self.span == "all":
            encoded = encode_released(p.tokenizer, prompts, completions, self.max_length)
            kl = mean_kl(
                n, p, encoded, smoothing=RELEASED_SMOOTHING, through_end=True, token_budget=self.batch_tokens
            )
        else:
            encoded = encode(p.tokenizer, prompts, completions, span="completion", max_length=self.max_length)
            kl = mean_kl(n, p, encoded, token_budget=self.batch_tokens)
        return {"nce_beta": pa.array(np.tanh(kl), pa.float64())}

    def select(self, batch: pa.RecordBatch, stats: Mapping[str, Any]) -> Selection:
        beta = batch.column("nce_beta").to_numpy(zero_copy_only=False)
        return Selection(keep=np.ones(batch.num_rows, dtype=bool), weight=0.5 + beta)


@hookimpl
def register_filters(register: RegisterFilter) -> None:
    register(NceKL)
