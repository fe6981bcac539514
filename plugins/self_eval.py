"""``self_eval`` (IWSI's Self-filter, after Self-Alignment): the model grades its own rationale.

The prompt asks for a rating from 0 to 10 as ``Score: <n>`` and ends right
after ``Score:``. By default the score is the expected value of the model's
next-token distribution over the ratings (renormalised over them): one
forward pass, no sampling, and a graded value rather than a coarse integer.
A rating spelt with two tokens (``10`` as ``1`` ``0`` in digit-split
vocabularies) gets the product of its next-token probabilities, read from
the same forward pass, and P(1) keeps only what does not go on to ``10``.
``mode: generate`` instead decodes
a few greedy tokens and parses the first number (IWSI's way; 0 when none).

The rows with the top ``keep_percent`` % scores are kept: exactly
``floor(N * k / 100)`` rows, ties at the cut (common with integer ratings)
broken by a ``seed``-ed hash of each row (``cut_rule: exact``; see
:func:`curator.filter.percentile_cut`). ``cut_rule: iwsi`` is the released
code's selection (IWSI's ``filter_data.py``, mode ``Self``, on the ratings
``self_weight.py`` writes): with c the rating at index ``int(N * k / 100)`` of
the ratings sorted from best, every row rated at least c is kept when c > 0,
ties included; when c = 0 exactly ``int(N * k / 100)`` rows are kept, the
zero-rated ones chosen in file order there and by the seeded hash here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from curator import (
    TIE_KEY,
    CuratorError,
    Filter,
    FilterContext,
    RegisterFilter,
    ScoreColumns,
    Selection,
    check_percent,
    hookimpl,
    keep_at_cut,
    percentile_cut,
    row_hashes,
    seeded_keys,
    select_option,
)
from curator.lm.options import ModelOptions

PROMPT = (
    "Below are a question and a candidate answer. Rate how good an example the answer is: a good "
    "answer is complete, clear and well organised, with no missing or irrelevant steps. Give a "
    "rating from 0 to 10, where 10 is the best and 0 the worst, in the form 'Score: <rating>'.\n\n"
    "Q: {question}\nA: {rationale}\nScore:"
)
SCORES = range(11)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class RatingTokens:
    """How one tokenizer spells the ratings 0…10 after ``Score:``, and how to read them.

    ``shared`` tokens start every rating (a lone space piece in many
    vocabularies) and are appended to the prompt. ``paths[s]`` are the tokens
    of rating s after them: one token in most vocabularies, two for ``10``
    where digits are split, two for a rating the vocabulary lacks as a word
    piece. P(path) multiplies next-token probabilities read at each proper
    prefix of the paths (the ``contexts``); a rating whose path is the start
    of another's (``1`` of ``10``) gives that longer rating its share.
    """

    shared: list[int]
    paths: list[tuple[int, ...]]

    @classmethod
    def of(cls, tokenizer: Any) -> RatingTokens:
        base = tokenizer("Score:", add_special_tokens=False)["input_ids"]
        spelt = [tokenizer(f"Score: {s}", add_special_tokens=False)["input_ids"] for s in SCORES]
        if any(ids[: len(base)] != base for ids in spelt):
            raise CuratorError("self_eval: the tokenizer merges 'Score:' with the rating; use mode: generate")
        rests = [ids[len(base) :] for ids in spelt]
        shared = 0
        while all(len(r) > shared + 1 for r in rests) and len({r[shared] for r in rests}) == 1:
            shared += 1
        return cls(rests[0][:shared], [tuple(r[shared:]) for r in rests])

    @cached_property
    def contexts(self) -> list[tuple[int, ...]]:
        """Every proper prefix of a path, shortest first; () is the position right after the prompt."""
        return sorted({path[:k] for path in self.paths for k in range(len(path))}, key=lambda c: (len(c), c))

    @cached_property
    def candidates(self) -> list[int]:
        return sorted({token for path in self.paths for token in path})

    @cached_property
    def chained(self) -> bool:
        """Whether all contexts lie on one path, so one sequence per sample reads them all."""
        longest = self.contexts[-1]
        return all(longest[: len(c)] == c for c in self.contexts)

    def sequences(self, prompt: list[int]) -> list[list[int]]:
        """The sequences to run for one prompt: one when chained, else one per context."""
        if self.chained:
            return [prompt + self.shared + list(self.contexts[-1])]
        return [prompt + self.shared + list(c) for c in self.contexts]

    def expected(self, log_probs: np.ndarray) -> np.ndarray:
        """Expected rating from ``[samples, contexts, candidates]`` next-token log-probabilities."""
        context = {c: i for i, c in enumerate(self.contexts)}
        token = {t: i for i, t in enumerate(self.candidates)}
        path_log_prob = np.zeros((log_probs.shape[0], len(self.paths)))
        for s, path in enumerate(self.paths):
            for k, tok in enumerate(path):
                path_log_prob[:, s] += log_probs[:, context[path[:k]], token[tok]]
        probs = np.exp(path_log_prob)
        exact = probs.copy()
        for s, path in enumerate(self.paths):
            for longer, other in enumerate(self.paths):
                if len(other) > len(path) and other[: len(path)] == path:
                    exact[:, s] -= probs[:, longer]
        exact = exact.clip(min=0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return exact @ np.arange(len(SCORES), dtype=np.float64) / exact.sum(axis=1)


@dataclass(kw_only=True)
class SelfEval(ModelOptions, Filter):
    name = "self_eval"
    columns = ("self_eval", TIE_KEY)
    scope = "row"
    score_meaning = {"self_eval": "higher"}
    dependencies = ("torch", "transformers")
    extra = "lm"

    adapter: str | None = None
    mode: Literal["expected", "generate"] = "expected"
    prompt: str = PROMPT
    max_length: int = 1024
    max_new_tokens: int = 8
    keep_percent: float = select_option(80.0)
    cut_rule: Literal["exact", "iwsi"] = select_option("exact")
    seed: int = select_option(0)

    def validate(self, step: str) -> None:
        check_percent(self.keep_percent, step)
        self.check_model_options(step)
        if "{question}" not in self.prompt or "{rationale}" not in self.prompt:
            raise CuratorError(f"filter step '{step}': option 'prompt' must contain {{question}} and {{rationale}}")
        if self.mode == "expected" and not self.prompt.rstrip().endswith("Score:"):
            raise CuratorError(f"filter step '{step}': with mode 'expected' the prompt must end with 'Score:'")

    def score(self, batch: pa.RecordBatch, context: FilterContext) -> Mapping[str, Any]:
        from curator.lm.generation import greedy_continuations
        from curator.lm.scoring import next_token_logprobs

        lm = self.causal_lm(context, adapter=self.adapter)
        texts = [
            self.prompt.rstrip().format(question=q, rationale=r)
            for q, r in zip(batch.column("question").to_pylist(), batch.column("rationale").to_pylist(), strict=True)
        ]
        sequences = lm.tokenizer(texts)["input_ids"]
        if self.mode == "expected":
            ratings = RatingTokens.of(lm.tokenizer)
            room = len(ratings.shared) + len(ratings.contexts[-1])
            runs = [run for ids in self._cut(sequences, room) for run in ratings.sequences(ids)]
            last = len(ratings.contexts) if ratings.chained else 1
            log_probs = next_token_logprobs(
                lm, runs, ratings.candidates, last=last, token_budget=self.batch_tokens
            )
            values = ratings.expected(log_probs.reshape(len(sequences), len(ratings.contexts), -1))
        else:
            verdicts = greedy_continuations(
                lm, self._cut(sequences), max_new_tokens=self.max_new_tokens, token_budget=self.batch_tokens
            )
            values = np.array([parse_rating(t) for t in verdicts], dtype=np.float64)
        return {"self_eval": pa.array(values, pa.float64()), TIE_KEY: row_hashes(batch)}

    def _cut(self, sequences: list[list[int]], room: int = 0) -> list[list[int]]:
        """Cut long prompts from the left, so the request for a score at the end survives.

        ``room`` tokens are kept free for what is appended after the prompt.
        """
        from curator.lm.scoring import warn_truncated

        keep = max(1, self.max_length - room)
        cut = sum(len(ids) > keep for ids in sequences)
        if not cut:
            return sequences
        warn_truncated(cut, len(sequences), self.max_length)
        return [ids[-keep:] for ids in sequences]

    def fit(self, scores: ScoreColumns) -> dict[str, Any]:
        values, keys = scores.numpy("self_eval"), seeded_keys(scores.column(TIE_KEY), self.seed)
        if self.cut_rule == "iwsi":
            released = percentile_cut(values, self.keep_percent, keep="highest", rule="iwsi_inclusive")
            if released["cut"] is None or released["cut"] > 0:
                return released
        return percentile_cut(values, self.keep_percent, keep="highest", tie_keys=keys)

    def select(self, batch: pa.RecordBatch, stats: Mapping[str, Any]) -> Selection:
        values = batch.column("self_eval").to_numpy(zero_copy_only=False)
        return Selection(keep=keep_at_cut(values, stats, seeded_keys(batch.column(TIE_KEY), self.seed)))


def parse_rating(text: str) -> float:
    """The first number of a generated verdict, clipped to [0, 10]; 0 when there is none (as IWSI)."""
    match = _NUMBER.search(text)
    return min(max(float(match.group()), 0.0), 10.0) if match else 0.0


@hookimpl
def register_filters(register: RegisterFilter) -> None:
    register(SelfEval)
