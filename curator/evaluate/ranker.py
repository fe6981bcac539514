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

import sys
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
    max_length: int = 512,
    token_budget: int | None = None,
) -> np.ndarray:
    """``sigmoid(logit)`` of every (question, rationale), batched by length under a token budget.

    A pair longer than ``max_length`` tokens is not scored (NaN), as in the
    released code (its ``toke`` returns None past 512): cut, it would lose
    its end, where the answer is; :func:`fill_unscored` gives it a score.
    """
    from curator.lm.pairs import encode_pairs
    from curator.lm.scoring import classifier_logits

    ids = encode_pairs(ranker.tokenizer, list(questions), list(rationales), sys.maxsize)
    scored = [i for i, pair in enumerate(ids) if len(pair) <= max_length]
    scores = np.full(len(ids), np.nan)
    if scored:
        logits = classifier_logits(ranker, [ids[i] for i in scored], token_budget=token_budget)[:, 0]
        scores[scored] = 1.0 / (1.0 + np.exp(-logits))
    return scores


def fill_unscored(scores: np.ndarray, question: np.ndarray) -> np.ndarray:
    """Unscored candidates (NaN) get the mean score of their question's scored ones, or 1 if it has none.

    The released ``ASC.py``'s rule for candidates too long for the ranker.
    """
    scored = ~np.isnan(scores)
    groups = int(question.max()) + 1 if len(question) else 0
    total = np.bincount(question[scored], weights=scores[scored], minlength=groups)
    count = np.bincount(question[scored], minlength=groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, 1.0)
    return np.where(scored, scores, mean[question])
