"""The numeric tasks: GSM8K, and the arithmetic sets (SVAMP, MultiArith, AddSub, SingleEq, ASDiv).

Both read the same number from a rationale (see ``answers_numbers``) and
differ in the gold answer and in equality: GSM8K's gold is the number after
``####`` and equality is exact on the decimal value; the arithmetic sets'
gold may carry units, and equality allows a float tolerance because their
gold answers are often computed floats (``0.3333333333``).

The batch methods run on pyarrow kernels and give the same results as the
per-row methods, which remain the definition.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from curator import Task
from curator_plugins.answers_numbers import (
    answer_number,
    answer_number_batch,
    as_float,
    canonical_number_batch,
    canonical_or_self,
    float_batch,
    gold_number,
    gold_number_batch,
    leading_number,
    leading_number_batch,
)


def string_array(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous ``string`` array, whatever the engine hands over (chunked, large, all-null)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    return texts if texts.type == pa.string() else texts.cast(pa.string())


class Gsm8kTask(Task):
    """GSM8K: numbers compared by exact decimal value."""

    name = "gsm8k"

    def extract(self, text: str) -> str | None:
        return answer_number(text)

    def normalize_reference(self, text: str) -> str | None:
        return gold_number(text)

    def equal(self, a: str | None, b: str | None) -> bool:
        # Canonical answers are equal as strings; canonicalising again lets a
        # caller compare raw spellings ("18.0", "18") too.
        return a is not None and b is not None and canonical_or_self(a) == canonical_or_self(b)

    def extract_batch(self, texts: pa.Array) -> pa.StringArray:
        return answer_number_batch(string_array(texts))

    def normalize_reference_batch(self, texts: pa.Array) -> pa.StringArray:
        return gold_number_batch(string_array(texts))

    def equal_batch(self, a: pa.Array, b: pa.Array) -> pa.BooleanArray:
        same = pc.equal(canonical_number_batch(string_array(a)), canonical_number_batch(string_array(b)))
        return pc.fill_null(same, False)


class NumericTask(Gsm8kTask):
    """Arithmetic word problems: gold answers may carry units; values equal within a tolerance."""

    name = "numeric"
    tolerance = 1e-6

    def normalize_reference(self, text: str) -> str | None:
        return leading_number(text)

    def equal(self, a: str | None, b: str | None) -> bool:
        if a is None or b is None:
            return False
        x, y = as_float(a), as_float(b)
        if x is None or y is None:
            return a == b
        return abs(x - y) <= self.tolerance

    def normalize_reference_batch(self, texts: pa.Array) -> pa.StringArray:
        return leading_number_batch(string_array(texts))

    def equal_batch(self, a: pa.Array, b: pa.Array) -> pa.BooleanArray:
        a, b = string_array(a), string_array(b)
        x, y = float_batch(a), float_batch(b)
        close = pc.less_equal(pc.abs(pc.subtract(x, y)), self.tolerance)
        both_numbers = pc.and_(pc.is_valid(x), pc.is_valid(y))
        return pc.fill_null(pc.if_else(both_numbers, close, pc.equal(a, b)), False)
