"""MATH answers: ``math`` keeps the released normaliser's verdicts, ``math_verify`` checks values with math-verify.

The texts are MATH-style solutions written for these tests, in the shapes
the released GPT-3.5/GPT-4 MATH generations of Dust into Gold take.
"""

from __future__ import annotations

import importlib.util
import sys
import threading

import pyarrow as pa
import pytest

from curator import MissingDependency
from curator.plugins import get_registry
from curator.testing import make_candidates, run_filter

HAS_MATH_VERIFY = importlib.util.find_spec("math_verify") is not None
SOLUTION = (
    "Since there are 3 feet to a yard, there are $3^3=27$ cubic feet to a cubic yard. Thus, there are "
    "$108/27=\\boxed{{{answer}}}$ cubic yards in the volume of the box."
)


def task(name):
    return get_registry().task(name)


def label(name: str, rationale: str, gold_solution: str) -> bool:
    t = task(name)
    return t.equal(t.extract(rationale), t.normalize_reference(gold_solution))


# (rationale, gold answer, equal by the released MATH normaliser, equal by value)
PAIRS = [
    ("There are $50{,}000 - 0 = \\boxed{50,000}$ ways.", "50000", False, True),
    ("Dividing, the side is $\\frac{45}{4} = \\boxed{11.25}$.", "\\frac{45}{4}", False, True),
    ("Factoring the difference of squares, $t^2-121=\\boxed{(t-11)(t+11)}$.", "(t+11)(t-11)", False, True),
    ("The circumference is $2\\pi r = \\boxed{2\\pi\\text{ m}}$.", "2\\pi", True, True),
    ("Thus $x = \\boxed{\\dfrac{1}{2}}$.", "0.5", True, True),
    ("So the angle measures $\\boxed{90^\\circ}$.", "90", True, True),
    ("The probability is $\\boxed{\\frac{2}{4}}$.", "\\frac{1}{2}", False, True),
    ("The interval is $\\boxed{\\left(-\\infty, 3\\right]}$.", "(-\\infty,3]", True, True),
    ("The roots are $\\boxed{5, -2}$.", "-2, 5", False, True),
    ("We get $a + b = 2 + 51 = \\boxed{53}$.", "12", False, False),
    ("So $c = \\boxed{-\\tfrac{112}{9}}$.", "5", False, False),
    ("The expansion is $\\boxed{6z^5 - 11z^3 - 4z^2 + 13z - 6}$.", "6z^5+15z^4-22z^3-8z^2+17z-6", False, False),
]


@pytest.mark.parametrize(("rationale", "gold", "released", "value"), PAIRS)
def test_math_keeps_the_released_verdict_and_math_verify_compares_values(rationale, gold, released, value):
    assert label("math", rationale, SOLUTION.format(answer=gold)) is released
    if HAS_MATH_VERIFY:
        assert label("math_verify", rationale, SOLUTION.format(answer=gold)) is value


UNBOXED = [
    ("Adding the two lengths gives 7 + 5 = 12. The answer is 12.", "12"),
    ("By Vieta, $c = \\frac{8}{3}$.\nFinal Answer: The final answer is $\\frac{8}{3}$. I hope it is correct.",
     "\\frac{8}{3}"),
    ("So the area is $16\\pi$. Therefore, the answer is $16\\pi$.", "16\\pi"),
    ("The answer is: $x = 5$", "5"),
]


@pytest.mark.parametrize(("rationale", "answer"), UNBOXED)
def test_answers_without_a_box_are_read_only_when_asked(rationale, answer):
    assert task("math").extract(rationale) is None
    assert task("math:answer_line").extract(rationale) == answer
    assert label("math:answer_line", rationale, SOLUTION.format(answer=answer))


def test_a_box_wins_over_an_answer_line_and_text_without_either_has_no_answer():
    both = "We find $\\boxed{4}$ cubic yards. The answer is 4 cubic yards."
    assert task("math:answer_line").extract(both) == "4"
    assert task("math:answer_line").extract("We are not sure how to finish this.") is None


def test_math_verify_reads_unboxed_answers_and_never_equates_missing_ones():
    pytest.importorskip("math_verify")
    lenient = task("math_verify:answer_line")
    assert label("math_verify:answer_line", "The answer is $\\dfrac{45}{4}$.", SOLUTION.format(answer="11.25"))
    assert not label("math_verify", "The answer is $\\dfrac{45}{4}$.", SOLUTION.format(answer="11.25"))
    assert not lenient.equal(None, None) and not lenient.equal("3", None)


def test_math_verify_batch_equals_row_by_row_and_works_off_the_main_thread():
    pytest.importorskip("math_verify")
    t = task("math_verify")
    answers = pa.array(["50,000", "11.25", None, "3", "(t-11)(t+11)", "\\frac{1}{2}"])
    golds = pa.array(["50000", "\\frac{45}{4}", "1", "4", "(t+11)(t-11)", "\\frac{1}{2}"])
    expected = [t.equal(a, b) for a, b in zip(answers.to_pylist(), golds.to_pylist())]
    assert expected == [True, True, False, False, True, True]
    assert t.equal_batch(answers, golds).to_pylist() == expected
    seen = []
    worker = threading.Thread(target=lambda: seen.append(t.equal_batch(answers, golds).to_pylist()))
    worker.start()
    worker.join()
    assert seen == [expected]  # math-verify's SIGALRM limits are only set on the main thread


def test_correctness_with_math_verify_in_a_build():
    pytest.importorskip("math_verify")
    rationales = [["So the count is $\\boxed{50,000}$.", "So the count is $\\boxed{5000}$.",
                   "The answer is 50000."]]
    table = make_candidates([[None, None, None]], rationales=rationales, references=["50000"]).drop_columns(["answer"])
    strict = run_filter("correctness", table, task="math")
    assert strict.column("correct").to_pylist() == [False, False, False]
    lenient = run_filter("correctness", table, task="math_verify:answer_line")
    assert lenient.column("correct").to_pylist() == [True, False, True]


def test_math_verify_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # import math_verify now raises ImportError
    t = task("math_verify")  # registering never imports it
    with pytest.raises(MissingDependency, match=r"task 'math_verify' needs the package 'math-verify' "
                                                r"\(pip install 'rationale-curator\[math\]'\)"):
        t.extract_batch(pa.array(["\\boxed{1}"]))
