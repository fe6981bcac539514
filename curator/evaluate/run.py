"""One evaluation run: prompts out through a backend, answers parsed, votes counted, files written.

The prompt is the trainer's own layout (:mod:`curator.formats`), so an
adapter is asked exactly the way it was taught. Requests stream through
:func:`curator.backend.iter_results` with the backend's bounded concurrency;
a request that fails after the backend's retries is recorded, scored as
wrong, and makes the run finish with failures (exit code 1) rather than stop.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator.backend import BackendOptions, Request, Result, SamplingParams, iter_results
from curator.errors import CuratorError
from curator.evaluate.config import EvalConfig, EvalResult
from curator.evaluate.voting import (
    PRESETS,
    TIE_DESCRIPTIONS,
    Votes,
    credit,
    ranked_weights,
    sequence_probability,
    vote,
    wilson_interval,
)
from curator.formats import prompt_of, stops
from curator.outputs import atomic_path, output_lock, package_versions, write_json
from curator.plugins import Registry, get_registry
from curator.progress import progress_bar
from curator.questions import QuestionFile
from curator.task import Task

OUTPUTS = ("predictions.parquet", "metrics.json")


def read_test_set(
    path: str, task: Task, limit: int | None = None, *, config: str | None = None, split: str | None = None
) -> pa.Table:
    """``id``, ``question`` and the normalised ``reference`` of each test question.

    Read like ``curator generate``'s questions: the gold answer is the
    ``reference`` column, or else ``answer`` (GSM8K's worked solution ending
    in ``#### N``), through the task's reference normaliser; a missing id is
    the same stable hash of the question text that generate gives it.
    """
    questions = QuestionFile(path, task, config=config, split=split)
    if not questions.columns:
        raise CuratorError(f"{path}: no questions")
    if not questions.has_reference:
        raise CuratorError(f"{path}: no gold answers (a 'reference' or 'answer' column)")
    rows = list(itertools.islice(questions, limit))
    if not rows:
        raise CuratorError(f"{path}: no questions")
    return pa.table({
        "id": pa.array([q.id for q in rows], pa.string()),
        "question": pa.array([q.question for q in rows], pa.string()),
        "reference": pa.array([q.reference for q in rows], pa.string()),
    })


def build_requests(questions: list[str], config: EvalConfig) -> list[Request]:
    params = SamplingParams(
        n=config.n or 1,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        stop=stops(config.format),
        logprobs=config.strategy == "weighted",
        seed=config.seed,
    )
    if config.format == "chat":  # the backend renders the chat template
        return [Request.single_turn(q, params, key=i) for i, q in enumerate(questions)]
    return [Request.single_turn(prompt_of(q, config.format), params, key=i) for i, q in enumerate(questions)]


def generate(config: EvalConfig, questions: list[str], registry: Registry) -> list[Result]:
    """One result per question, in question order."""
    backend_class = registry.backend(config.backend_name)
    extra = {"adapter": config.adapter} if config.adapter else {}
    options = BackendOptions(
        model=config.model,
        base_url=config.base_url,
        chat=config.format == "chat",
        concurrency=config.concurrency,
        seed=config.seed,
        batch_size=config.batch_size,
        device=config.device,
        dtype=config.dtype,
        extra=extra,
    )
    results: list[Result | None] = [None] * len(questions)
    with progress_bar(len(questions), "eval", enabled=config.progress, unit="questions") as bar:
        for result in iter_results(backend_class(options), build_requests(questions, config)):
            results[cast(int, result.request.key)] = result
            bar.update(1)
    return cast(list[Result], results)  # iter_results answers every request


def run_eval(config: EvalConfig, *, registry: Registry | None = None) -> EvalResult:
    """Generate, parse, vote and write ``predictions.parquet`` and ``metrics.json`` (last: the folder is complete)."""
    inputs = [config.data, config.model, config.adapter, config.ranker]
    with output_lock(config.output, "eval", inputs=inputs, writes=OUTPUTS):
        return _evaluate(config, registry or get_registry())


def _evaluate(config: EvalConfig, registry: Registry) -> EvalResult:
    started = time.time()
    task = registry.task(config.task)
    test = read_test_set(config.data, task, config.limit, config=config.config, split=config.split)
    results = generate(config, test["question"].to_pylist(), registry)
    candidates = _candidates(results, task)
    generated = pc.is_valid(candidates["text"]).to_numpy(zero_copy_only=False)
    scores, unscored = (
        _ranker_scores(config, test, candidates, generated) if config.strategy == "ranked" else (None, 0)
    )
    weights = None
    if scores is not None:
        weights = ranked_weights(scores, config.preset)
    elif config.strategy == "weighted":
        logprob, n_tokens = (_floats(candidates[c])[generated] for c in ("logprob", "n_tokens"))
        weights = np.zeros(candidates.num_rows)  # a failed request's null row has no answer, so no vote
        weights[generated] = sequence_probability(logprob, n_tokens)
    votes = vote(
        candidates["question"], candidates["answer"], weights, tie_rule=config.tie_rule, seed=config.seed or 0
    )
    references = test["reference"].combine_chunks()
    correct = task.equal_batch(votes.prediction, references)
    if config.tie_rule == "split":
        earned = credit(votes, references, task.equal_batch)
    else:
        earned = pc.fill_null(correct, False).to_numpy(zero_copy_only=False).astype(np.float64)
    predictions = _predictions(test, candidates, results, votes, correct, scores, earned)
    output = Path(config.output)
    path = output / "predictions.parquet"
    (output / "metrics.json").unlink(missing_ok=True)  # written last: only a finished run has it
    with atomic_path(path) as tmp:
        pq.write_table(predictions, tmp)
    right, total = float(earned.sum()), test.num_rows
    failed = sum(not r.ok for r in results)
    low, high = wilson_interval(right, total)
    metrics = {
        "command": "eval",
        "config": asdict(config),
        "backend": config.backend_name,
        "questions": total,
        "correct": int(right) if right.is_integer() else round(right, 6),
        "accuracy": right / total,
        "ci95": [low, high],
        "ci_method": "wilson",
        "failed_requests": failed,
        "no_answer": int(votes.prediction.null_count),
        "tie_rule": TIE_DESCRIPTIONS[config.tie_rule],
        "tied_questions": int((votes.ties > 1).sum()),
        "seconds": round(time.time() - started, 3),
        "versions": package_versions("torch", "transformers", "peft", "openai"),
    }
    if config.strategy == "ranked":
        metrics["coefficients"] = dict(zip(("c0", "c1"), PRESETS[config.preset], strict=True))
        metrics["ranker_unscored"] = unscored  # over ranker_max_length: their question's mean score
    write_json(output / "metrics.json", metrics)
    return EvalResult(metrics, path, failed)


def _candidates(results: list[Result], task: Task) -> pa.Table:
    """One row per completion, grouped by question number (a failed request leaves one null row)."""
    questions, texts, logprobs, tokens = [], [], [], []
    for index, result in enumerate(results):
        for completion in (result.completions if result.ok else ()) or (None,):
            questions.append(index)
            texts.append(None if completion is None else completion.text)
            logprobs.append(None if completion is None else completion.logprob)
            tokens.append(None if completion is None else completion.n_tokens)
    text = pa.array(texts, pa.string())
    return pa.table(
        {
            "question": pa.array(questions, pa.int64()),
            "text": text,
            "answer": task.extract_batch(text),
            "logprob": pa.array(logprobs, pa.float64()),
            "n_tokens": pa.array(tokens, pa.int32()),
        }
    )


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)


def _ranker_scores(
    config: EvalConfig, test: pa.Table, candidates: pa.Table, generated: np.ndarray
) -> tuple[np.ndarray, int]:
    """The ranker's score of every generated completion (0 for a failed request's row, which has no vote).

    Also how many were too long to score, and so have their question's mean.
    """
    from curator.evaluate.ranker import fill_unscored, load_ranker, ranker_scores

    assert config.ranker is not None
    scores = np.zeros(candidates.num_rows)
    rows = np.flatnonzero(generated)
    if len(rows):
        ranker = load_ranker(config.ranker, device=config.device, dtype=config.dtype)
        questions = test["question"].take(candidates["question"].take(rows)).to_pylist()
        scores[rows] = ranker_scores(
            ranker, questions, candidates["text"].take(rows).to_pylist(), max_length=config.ranker_max_length
        )
    unscored = int(np.isnan(scores).sum())
    scores[rows] = fill_unscored(scores[rows], candidates["question"].take(rows).to_numpy())
    return scores, unscored


def _predictions(
    test: pa.Table,
    candidates: pa.Table,
    results: list[Result],
    votes: Votes,
    correct: pa.Array,
    scores: np.ndarray | None,
    earned: np.ndarray,
) -> pa.Table:
    """Per question: the prediction, whether it is right, its score, and every candidate as list columns.

    ``credit`` is what the question adds to the accuracy: ``correct`` as 0/1,
    or ``1/|ties|`` under the split tie rule when the reference is among the ties.
    """
    counts = [max(len(r.completions), 1) if r.ok else 1 for r in results]
    offsets = pa.array(np.concatenate(([0], np.cumsum(counts))).astype(np.int32))
    columns = {
        "id": test["id"].combine_chunks(),
        "question": test["question"].combine_chunks(),
        "reference": test["reference"].combine_chunks(),
        "prediction": votes.prediction,
        "correct": correct,
        "credit": pa.array(earned, pa.float64()),
        "tied_answers": pa.array(votes.ties, pa.int32()),
        "vote_share": pa.array(votes.share, mask=np.isnan(votes.share)),
        "error": pa.array([r.error for r in results], pa.string()),
    }
    for name in ("text", "answer", "logprob", "n_tokens"):
        columns[f"candidate_{name}"] = pa.ListArray.from_arrays(offsets, candidates[name].combine_chunks())
    if scores is not None:
        columns["candidate_ranker_score"] = pa.ListArray.from_arrays(offsets, pa.array(scores, pa.float64()))
    return pa.table(columns)
