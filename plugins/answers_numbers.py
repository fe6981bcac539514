"""Numeric answers: finding the answer's number in a rationale, and its canonical form.

A number token is ``-?`` then ``123``, ``1.5`` or ``.5``, read after ``$`` and
``,`` are deleted from the text (so ``-$1,000.50`` is ``-1000.50``; a ``%``
is never part of a token). A minus sign belongs to the number only where it
is not a subtraction: it must not follow a letter or a digit, so ``16-3`` ends
in ``3`` and ``x = -3`` in ``-3``.

The canonical form makes string equality numeric equality, because majority
voting counts strings: no leading or trailing zeros, no trailing point, no
negative zero (``18.0`` -> ``18``, ``1000.50`` -> ``1000.5``, ``.5`` ->
``0.5``). It is computed on the decimal digits, never through a float,
which would print ``1e+20`` or lose digits.

The answer of a text: the first token after the last marker when there is a
marker, otherwise the last token of the text. Each rule is written twice: in
Python for one text, and as RE2 patterns for pyarrow's kernels, which have no
lookbehind, so each pattern consumes the character before the token instead.
The last token is searched for in the reversed text, where it is the first
match, so RE2 stops at the end of the rationale instead of carrying
submatches through all of it. Tests compare the two on real and on
adversarial text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curator_plugins.answers_ending import ending_numbers
from curator_plugins.answers_markers import after_last_marker, after_last_marker_batch, as_binary

_UNSIGNED = r"(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
_NUMBER = re.compile(rf"-?{_UNSIGNED}")
# Where a token may start: a sign after no letter or digit; a digit or point after
# no digit, point or sign (a '-' that follows a letter or digit is not a sign).
_TOKEN = re.compile(rf"(?<![0-9A-Za-z])-{_UNSIGNED}|(?<![0-9.\-]){_UNSIGNED}|(?<=[0-9A-Za-z]-){_UNSIGNED}")
_LEADING = re.compile(rf"[ \t\r\n]*(-?{_UNSIGNED})")

# RE2: the same starts, with the character before the token consumed. The
# alternatives of the start are ordered so that, where the lazy prefix cannot
# tell two starts apart, the earlier start wins.
_FIRST_TOKEN_RE2 = (
    rf"(?s)^.*?(?:(?:^|[^0-9A-Za-z])(?P<signed>-{_UNSIGNED})"
    rf"|(?:^|[^0-9.\-]|[0-9A-Za-z]-)(?P<unsigned>{_UNSIGNED}))"
)
# The first token of the reversed text is the last token of the text: the
# number spelt backwards, then the character that comes before it in the text.
_UNSIGNED_REVERSED = r"(?:(?:[0-9]+\.)?[0-9]+|[0-9]+\.)"
_LAST_TOKEN_REVERSED_RE2 = (
    rf"(?P<signed>{_UNSIGNED_REVERSED}-)(?:[^0-9A-Za-z]|$)"
    rf"|(?P<unsigned>{_UNSIGNED_REVERSED})(?:[^0-9.\-]|-[0-9A-Za-z]|$)"
)
_LEADING_RE2 = rf"^[ \t\r\n]*(?P<number>-?{_UNSIGNED})"
_NUMBER_RE2 = rf"^-?{_UNSIGNED}$"
# Exactly the spellings canonical_number produces.
_CANONICAL_RE2 = r"^(?:0|-?[1-9][0-9]*(?:\.[0-9]*[1-9])?|-?0\.[0-9]*[1-9])$"


def strip_symbols(text: str) -> str:
    """The text with ``$`` and ``,`` deleted, so currency and thousands read as plain numbers."""
    return text.replace("$", "").replace(",", "")


def canonical_number(token: str) -> str:
    """The canonical spelling of a number token (see the module docstring)."""
    value = Decimal(token)
    if value == 0:
        return "0"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def canonical_or_self(text: str) -> str:
    """A number's canonical spelling, or the text unchanged when it is not a number."""
    return canonical_number(text) if _NUMBER.fullmatch(text) else text


def as_float(text: str) -> float | None:
    """The value of a text that is one number token, else None."""
    return float(text) if _NUMBER.fullmatch(text) else None


def _first_number(text: str) -> str | None:
    match = _TOKEN.search(text)
    return None if match is None else canonical_number(match.group())


def answer_number(text: str) -> str | None:
    """The canonical number a rationale answers with, or None."""
    tail = after_last_marker(text)
    if tail is not None:
        return _first_number(strip_symbols(tail))
    tokens = _TOKEN.findall(strip_symbols(text))
    return canonical_number(tokens[-1]) if tokens else None


def gold_number(text: str) -> str | None:
    """A GSM8K reference: the number after the last ``####``, else parsed like a prediction."""
    _, sep, tail = text.rpartition("####")
    return _first_number(strip_symbols(tail)) if sep else answer_number(text)


def leading_number(text: str) -> str | None:
    """A gold answer that may carry units (ASDiv's ``9 (apples)``): its leading number, else parsed."""
    match = _LEADING.match(strip_symbols(text))
    return canonical_number(match.group(1)) if match else answer_number(text)


# The same functions over Arrow string arrays, nulls kept. Tails and reversed
# texts are binary: the searches are byte-wise, and every pattern is ASCII.


def _strip_symbols_batch(texts: pa.Array) -> pa.Array:
    return pc.replace_substring(pc.replace_substring(texts, "$", ""), ",", "")


def _split(texts: pa.Array, mask: np.ndarray, when: Callable[[pa.Array], pa.Array],
           otherwise: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``when`` of the rows under ``mask`` and ``otherwise`` of the rest, each computed on its own rows only."""
    if mask.all():
        return when(texts)
    if not mask.any():
        return otherwise(texts)
    chosen = np.flatnonzero(mask)
    others = np.flatnonzero(~mask)
    values = pa.concat_arrays([when(texts.take(chosen)), otherwise(texts.take(others)).cast(pa.string())])
    place = np.empty(len(texts), dtype=np.int64)
    place[chosen], place[others] = np.arange(len(chosen)), np.arange(len(chosen), len(texts))
    return values.take(place)


def _recompute(
    values: pa.Array, mask: pa.Array, texts: pa.Array, compute: Callable[[pa.Array], pa.Array]
) -> pa.Array:
    """``values`` with the rows under ``mask`` replaced by ``compute`` of those rows of ``texts``.

    A fallback rule runs on the few rows that need it, not on the whole batch.
    """
    if not pc.any(mask).as_py():
        return values
    return pc.replace_with_mask(values, mask, compute(texts.filter(mask)))


def canonical_number_batch(texts: pa.Array) -> pa.Array:
    """:func:`canonical_or_self` over a string array; only values not yet canonical reach Python.

    Most answers are spelt canonically already (``18``), and one batch can
    hold tens of thousands of distinct answers, one per question.
    """
    canonical = pc.fill_null(pc.match_substring_regex(texts, _CANONICAL_RE2), True)
    return _recompute(texts, pc.invert(canonical), texts, _canonical_distinct)


def _canonical_distinct(texts: pa.Array) -> pa.Array:
    """:func:`canonical_or_self` called once per distinct value: answers repeat within a question."""
    encoded = pc.dictionary_encode(texts)
    values = pa.array([canonical_or_self(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.take(values, encoded.indices)


def float_batch(texts: pa.Array) -> pa.Array:
    """:func:`as_float` over a string array (Arrow's parser rounds as Python's does)."""
    numbers = pc.fill_null(pc.match_substring_regex(texts, _NUMBER_RE2), False)
    return pc.cast(pc.if_else(numbers, texts, None), pa.float64())


def _token(matches: pa.StructArray) -> pa.Array:
    """The token of an ``extract_regex`` result with a signed and an unsigned group."""
    signed = pc.struct_field(matches, "signed")
    return pc.if_else(pc.equal(signed, b""), pc.struct_field(matches, "unsigned"), signed)


def _first_token_batch(tails: pa.Array) -> pa.Array:
    return _token(pc.extract_regex(_strip_symbols_batch(tails), _FIRST_TOKEN_RE2))


def _last_token_batch(texts: pa.Array) -> pa.Array:
    reversed_texts = pc.binary_reverse(_strip_symbols_batch(as_binary(texts)))
    return pc.binary_reverse(_token(pc.extract_regex(reversed_texts, _LAST_TOKEN_REVERSED_RE2)))


def _tokens_to_answers(tokens: pa.Array) -> pa.Array:
    return canonical_number_batch(tokens.cast(pa.string()))


def answer_number_batch(texts: pa.Array) -> pa.Array:
    """:func:`answer_number` over a string array of rationales.

    Texts that end the usual way (a marker, one number) are read from their
    last bytes (``answers_ending``); only the others go through the regexes.
    """
    found, tokens = ending_numbers(texts)
    return _split(texts, found, lambda _: _tokens_to_answers(tokens), _answer_number_batch)


def _answer_number_batch(texts: pa.Array) -> pa.Array:
    tails = after_last_marker_batch(texts)
    tokens = _recompute(_first_token_batch(tails), pc.is_null(tails), as_binary(texts), _last_token_batch)
    return _tokens_to_answers(tokens)


def _plain_numbers(texts: pa.Array) -> np.ndarray:
    """Where a text is one number token and nothing else (``123``): every rule below reads it as itself."""
    return np.asarray(pc.fill_null(pc.match_substring_regex(texts, _NUMBER_RE2), False))


def gold_number_batch(texts: pa.Array) -> pa.Array:
    """:func:`gold_number` over a string array of references (plain numbers, the usual case, go straight through)."""
    return _split(texts, _plain_numbers(texts), canonical_number_batch, _gold_number_batch)


def _gold_number_batch(texts: pa.Array) -> pa.Array:
    tails = after_last_marker_batch(texts, "####")  # a palindrome
    answers = _tokens_to_answers(_first_token_batch(tails))
    return _recompute(answers, pc.is_null(tails), texts, answer_number_batch)


def leading_number_batch(texts: pa.Array) -> pa.Array:
    """:func:`leading_number` over a string array of references (plain numbers go straight through)."""
    return _split(texts, _plain_numbers(texts), canonical_number_batch, _leading_number_batch)


def _leading_number_batch(texts: pa.Array) -> pa.Array:
    matches = pc.extract_regex(_strip_symbols_batch(texts), _LEADING_RE2)
    numbers = canonical_number_batch(pc.struct_field(matches, "number"))
    return _recompute(numbers, pc.invert(pc.is_valid(matches)), texts, answer_number_batch)
