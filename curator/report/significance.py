"""Paired tests between models evaluated on the same questions.

Two adapters scored on one test set are paired data: what tells them apart
is only the questions one gets right and the other wrong. McNemar's exact
test asks whether those discordant questions split evenly (``b`` against
``c``, binomial with p = 1/2), which two overlapping confidence intervals
cannot: both may be wide while the paired difference is clear.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: P(X <= min(b, c)) doubled, X ~ Binomial(b + c, 1/2), at most 1."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


@dataclass
class PairedTest:
    """Two models on the questions both were evaluated on."""

    first: str
    second: str
    questions: int
    both: int
    first_only: int
    second_only: int
    neither: int

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.first_only, self.second_only)


def read_answers(path: str | Path) -> dict[str, bool]:
    """Question id -> whether the evaluated model answered it right (``predictions.parquet``)."""
    table = pq.read_table(path, columns=["id", "correct"])
    right = pc.fill_null(table["correct"], False).to_pylist()
    return dict(zip(table["id"].to_pylist(), right, strict=True))


def paired_tests(evaluations: Mapping[str, Mapping[str, Any]]) -> list[PairedTest]:
    """Every pair of evaluated models (in the order given) that share questions."""
    answers = {
        name: read_answers(metrics["predictions"])
        for name, metrics in evaluations.items()
        if metrics.get("predictions") and Path(metrics["predictions"]).exists()
    }
    names = list(answers)
    tests = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = answers[first].keys() & answers[second].keys()
            if not shared:
                continue
            a, b = answers[first], answers[second]
            tests.append(
                PairedTest(
                    first,
                    second,
                    len(shared),
                    both=sum(a[q] and b[q] for q in shared),
                    first_only=sum(a[q] and not b[q] for q in shared),
                    second_only=sum(b[q] and not a[q] for q in shared),
                    neither=sum(not a[q] and not b[q] for q in shared),
                )
            )
    return tests
