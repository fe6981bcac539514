"""The ASC ranker objective (Dust into Gold): a one-output classifier of rationale correctness.

The model is the base with a sequence-classification head and LoRA; its
score is ``s = sigmoid(logit)`` of the (question, rationale) pair encoded as
the ``reward_model`` filter encodes it, so the trained ranker (its
``merged/`` folder with ``--merge``) is also a reward model. The label is the row's
``correct`` column: a build with a ``correctness`` step gives 1 to the rows
it kept (curated, or dropped later by another step) and 0 to the rows it
dropped (``dropped_by = correctness``); rows that never reached the step
(``correct`` null) are left out. Train on curated and rejected rows together:
``--data`` a build's output folder reads both, or name the files one by one
(``--data curated.parquet --data rejected.parquet``).

- ``ranker``: ``Σ_n w_n (s_n − y_n)²`` (MSE, the paper's ranker).
- ``ranker-pairwise``: the released code's ``(1 − s_pos)³ + s_neg³``. Its
  pairs add one term per sample, so here each positive contributes
  ``(1 − s)³`` and each negative ``s³``; the released code's pairing also
  balanced the classes one to one, which here is up to the data.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow.compute as pc
import torch

from curator.errors import CuratorError
from curator.lm.loading import give_pad_id
from curator.lm.pairs import encode_pairs
from curator.train.batching import Batch
from curator.train.data import BUILD_OUTPUTS, IGNORE, Sample, TrainingTable
from curator.train.objectives import Objective


class Ranker(Objective):
    """MSE between the sigmoid score and the 0/1 correctness label, one loss unit per sample."""

    task_type: ClassVar[str] = "SEQ_CLS"
    columns: ClassVar[tuple[str, ...]] = ("question", "rationale", "correct")
    packable: ClassVar[bool] = False
    build_files: ClassVar[tuple[str, ...]] = BUILD_OUTPUTS

    def load_model(self, path: str, **kwargs: Any) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kwargs)
        if model.config.pad_token_id is None:
            # The head scores each row's last non-pad token; pad ids must match the collator's.
            tokenizer = AutoTokenizer.from_pretrained(
                self.config.model, trust_remote_code=self.config.trust_remote_code
            )
            give_pad_id(model, tokenizer)
        return model

    def encode(self, data: TrainingTable, tokenizer: Any) -> tuple[list[Sample], int]:
        table = data.table
        labels = table.column("correct")
        labelled = pc.is_valid(labels).to_numpy(zero_copy_only=False)
        if not labelled.any():
            raise CuratorError(
                f"{data.label}: no row has a 'correct' label (run a build with a correctness step)"
            )
        label = pc.fill_null(labels, False).to_numpy(zero_copy_only=False).astype(np.float32)
        if label[labelled].min() == label[labelled].max():
            kind = "correct" if label[labelled][0] else "incorrect"
            raise CuratorError(
                f"{data.label}: every labelled row is {kind}; a ranker needs both kinds "
                "(give a build folder, or its curated and rejected files, as --data)"
            )
        rows = np.flatnonzero(labelled)
        questions = table.column("question").take(rows).to_pylist()
        rationales = table.column("rationale").take(rows).to_pylist()
        encoded = encode_pairs(tokenizer, questions, rationales, self.config.max_length)
        samples = []
        for row, ids in zip(rows, encoded, strict=True):
            tokens = np.asarray(ids, dtype=np.int64)
            targets = np.full(len(tokens), IGNORE, dtype=np.int64)
            samples.append(Sample(tokens, targets, float(data.weights[row]), 1, {"label": float(label[row])}))
        return samples, sum(len(ids) >= self.config.max_length for ids in encoded)

    def scores(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        logits = model(**batch.model_inputs()).logits
        return torch.sigmoid(logits[:, 0].float())

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        s, y = self.scores(model, batch), batch.values["label"]
        return (batch.weights * (s - y).square()).sum()


class PairwiseRanker(Ranker):
    """The released code's ``(1 − s)³`` for positives and ``s³`` for negatives."""

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        s, y = self.scores(model, batch), batch.values["label"]
        return (batch.weights * (y * (1 - s).pow(3) + (1 - y) * s.pow(3))).sum()
