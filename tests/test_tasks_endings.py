"""The byte-level reading of the usual rationale ending (``answers_ending``) against the per-row rule.

The batch parser reads texts that end with a marker and one number from
their last bytes and sends every other text through the regexes; both must
give what :func:`answer_number` gives, row for row.
"""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from curator.plugins import get_registry
from curator_plugins.answers_ending import WINDOW, ending_numbers
from curator_plugins.answers_markers import after_last_marker
from curator_plugins.answers_numbers import answer_number, canonical_number, strip_symbols

_BEFORE = ("She has 5 - 3 = 2 apples.", "x", "", "Q: 12\n", "日本 ", "####", "-->", "A:", "1.5", "-")
_MARKERS = ("\nA:", "A:", "xA:", "\r\nA:", "The answer is", "the answer is", "Therefore, the answer is", "####",
            "-->", "--->", "#####", "answer is", "A")
_BLANKS = ("", " ", "  ", "\t", "\n", " \n ")
_NUMBERS = ("18", "-3", "0", "007", "-0.0", ".5", "-.5", "1.5", "12.", "1.2.3", "--5", "$18", "1,000", "5%",
            "9" * (WINDOW - 2), "9" * WINDOW, "18 apples", "-", ".", "x5", "(5)", "5.5.")
_AFTER = ("", ".", "..", ". ", "\n", " .", "!", "\n\n")


def _endings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(part) for part in (_BEFORE, _MARKERS, _BLANKS, _NUMBERS, _AFTER, _BLANKS))
            for _ in range(count)]


def _rule(text: str) -> str | None:
    """The first token after the last marker (None: no marker, so the fast path must not claim the text)."""
    tail = after_last_marker(text)
    return None if tail is None else answer_number(text)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_tokens_read_from_the_end_are_the_rules_answers(seed):
    texts = _endings(20_000, seed)
    # Long leading text puts the ending away from the start of the data buffer; short texts test the window edges.
    texts += ["Some working out that runs on for a while. " * 3 + t for t in texts[:5_000]]
    found, tokens = ending_numbers(pa.array(texts, pa.string()))
    claimed = [t for t, f in zip(texts, found) if f]
    assert [canonical_number(token) for token in tokens.to_pylist()] == [_rule(t) for t in claimed]
    assert 0.1 * len(texts) < len(claimed) < 0.9 * len(texts)  # the fast path is exercised, and declines too


def test_only_texts_of_the_usual_shape_are_claimed():
    texts = ["x\nA: 18", "The answer is -3.50.\n", "#### 7 ", "A:-5", "-->-5",  # claimed
             "xA: 18", "A: 5 .", "A: $18", "A: 1,000", "A: 18 apples", "A:--5", "A: 1.2.3", "18", "A: ",
             "A: " + "9" * WINDOW, "The answer is 5 or 6", None, ""]
    found, tokens = ending_numbers(pa.array(texts, pa.string()))
    assert found.tolist() == [True] * 5 + [False] * (len(texts) - 5)
    assert tokens.to_pylist() == ["18", "-3.50", "7", "-5", "-5"]


def test_sliced_arrays_and_other_string_types():
    array = pa.array(["A: 1", None, "A: 2", "none", "The answer is 3."] * 4, pa.string())
    found, tokens = ending_numbers(array.slice(6, 9))
    assert found.tolist() == [False, True, False, True, True, False, True, False, True]
    assert tokens.to_pylist() == ["2", "3", "1", "2", "3"]
    assert not ending_numbers(array.cast(pa.large_string()))[0].any()  # left to the general rule


@pytest.mark.parametrize("name", ["gsm8k", "numeric"])
def test_batches_mixing_both_paths_match_the_per_row_methods(name):
    parser = get_registry().task(name)
    texts = _endings(5_000, 2) + [None, "", "no number"] + [strip_symbols(t) for t in _endings(500, 3)]
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))]
    array = pa.array(texts, pa.string())
    assert parser.extract_batch(array).to_pylist() == [None if t is None else parser.extract(t) for t in texts]
    references = [rng.choice(["18", "-3", "1,000", "#### 72", "0.50", "9 (apples)", "x"]) for _ in texts]
    expected = [parser.normalize_reference(t) for t in references]
    assert parser.normalize_reference_batch(pa.array(references, pa.string())).to_pylist() == expected
