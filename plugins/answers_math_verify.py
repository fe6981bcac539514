"""The ``math_verify`` task: MATH answers, found as ``math`` finds them, checked with HF's math-verify.

``math`` compares normalised LaTeX strings, as Dust into Gold and the MATH
authors did, so it reproduces their labels; it cannot see that ``50,000`` is
``50000``, ``\\frac{45}{4}`` is ``11.25`` or ``(t+11)(t-11)`` is
``(t-11)(t+11)``. ``math_verify`` reads the same answer (``parse`` as in
``math``: ``math_verify`` is boxed answers, ``math_verify:answer_line`` also
final answer lines) and stores the same normalised string, so voting and
entropy merge the same spellings as ``math`` does; equality parses both sides
into SymPy with math-verify (``pip install 'rationale-curator[math]'``) and
compares values, sets, intervals and equations.

Equality is checked string-first: answers whose normal forms are equal are
equal without parsing, and only the rest go to math-verify (per row, in
Python, with parses cached per distinct answer). ``equal(answer,
reference)`` is math-verify's ``verify(gold=reference, target=answer)``.
math-verify's time limits rely on SIGALRM, which only the main thread may
set; elsewhere (a worker thread) the checks run without a time limit.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curator import MissingDependency, RegisterTask, hookimpl
from curator_plugins.answers_math import MathTask

TIMEOUT_SECONDS = 5


def _math_verify() -> Any:
    try:
        import math_verify
    except ImportError:
        raise MissingDependency("math-verify", "task 'math_verify'", extra="math") from None
    return math_verify


def _timeout() -> int | None:
    return TIMEOUT_SECONDS if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=1 << 16)
def _parsed(answer: str) -> tuple[Any, ...]:
    """math-verify's reading of one normalised answer (empty when it reads nothing)."""
    return tuple(_math_verify().parse(f"${answer}$", parsing_timeout=_timeout()))


def verify_equal(answer: str | None, reference: str | None) -> bool:
    """Whether math-verify finds ``answer`` equal to the gold ``reference``; a missing answer equals nothing."""
    if answer is None or reference is None:
        return False
    if answer == reference:
        return True
    gold, target = _parsed(reference), _parsed(answer)
    if not gold or not target:
        return False
    return bool(_math_verify().verify(list(gold), list(target), timeout_seconds=_timeout()))


class MathVerifyTask(MathTask):
    """MATH answers as ``math`` reads them, equal when math-verify says so."""

    family = "math_verify"

    def extract(self, text: str) -> str | None:
        _math_verify()
        return super().extract(text)

    def normalize_reference(self, text: str) -> str | None:
        _math_verify()
        return super().normalize_reference(text)

    def extract_batch(self, texts: pa.Array) -> pa.StringArray:
        _math_verify()
        return super().extract_batch(texts)

    def normalize_reference_batch(self, texts: pa.Array) -> pa.StringArray:
        _math_verify()
        return super().normalize_reference_batch(texts)

    def equal(self, a: str | None, b: str | None) -> bool:
        return verify_equal(a, b)

    def equal_batch(self, a: pa.Array, b: pa.Array) -> pa.BooleanArray:
        _math_verify()
        same = pc.fill_null(pc.equal(a, b), False)
        both = pc.and_(pc.is_valid(a), pc.is_valid(b))
        pending = pc.and_(both, pc.invert(same)).to_numpy(zero_copy_only=False)
        if not pending.any():
            return same
        result = same.to_numpy(zero_copy_only=False).copy()
        answers, references = a.to_pylist(), b.to_pylist()
        for row in pending.nonzero()[0]:
            result[row] = verify_equal(answers[row], references[row])
        return pa.array(result, pa.bool_())


@hookimpl
def register_tasks(register: RegisterTask) -> None:
    for parse in ("boxed", "answer_line"):
        register(MathVerifyTask(parse))
