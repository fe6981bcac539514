"""The ASC ranker at inference: load it, and score (question, rationale) pairs in (0, 1).

A ranker is a sequence classifier with one output, trained by
``curator train --objective ranker`` (see :mod:`curator.train.ranker`) as a
LoRA adapter on a base model, or any full one-label classifier (the
trainer's ``merged/`` folder, a reward model). Its score is the sigmoid of
the logit, the quantity the training loss pulls to 1 for correct rationales
and 0 for incorrect ones. Training, this module and the ``reward_model``
filter all encode a (question, rationale) pair with the filter's
``encode_pairs``, so a ranker reads the same tokens wherever it is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from curator.errors import CuratorError
from curator.lm.loading import LoadedModel, load_sequence_classifier, require_lm
from curator.lm.weights import adapter_config


def load_ranker(path: str | Path, *, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """A ranker from a PEFT adapter folder (on the base it names) or a full classifier folder."""
    require_lm("the ASC ranker")
    folder = Path(path)
    if not (folder / "adapter_config.json").exists():
        return load_sequence_classifier(str(path), device=device, dtype=dtype)
    config = adapter_config(folder)
    if config.get("task_type") != "SEQ_CLS":
        raise CuratorError(
            f"{folder}: a {config.get('task_type')} adapter, not a ranker (train with --objective ranker)"
        )
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str):
        raise CuratorError(f"{folder}/adapter_config.json: no 'base_model_name_or_path' naming the ranker's base")
    try:
        return load_sequence_classifier(base, adapter=str(folder), num_labels=1, device=device, dtype=dtype)
    except OSError as exc:
        raise CuratorError(f"{folder}: cannot load the ranker's base model '{base}' ({exc})") from None


def ranker_scores(
    ranker: LoadedModel,
    questions: Sequence[str],
    rationales: Sequence[str],
    *,
    max_length: int = 1024,
    token_budget: int | None = None,
) -> np.ndarray:
    """``sigmoid(logit)`` of every (question, rationale), batched by length under a token budget."""
    from curator.lm.pairs import encode_pairs
    from curator.lm.scoring import classifier_logits

    ids = encode_pairs(ranker.tokenizer, list(questions), list(rationales), max_length)
    logits = classifier_logits(ranker, ids, token_budget=token_budget)[:, 0]
    return 1.0 / (1.0 + np.exp(-logits))
