"""The built-in tasks (answer parsers) on real text.

The GSM8K samples in tests/data are lines copied unchanged from OpenAI's
grade-school-math release (MIT, see tests/data/GSM8K_LICENSE):
``tasks_gsm8k_solutions.jsonl`` holds 50 of the 300 questions of
``model_solutions_dev.jsonl`` (four labelled GPT-3 solutions each; chosen to
include truncated solutions, negative and decimal answers and thousands
separators), ``tasks_gsm8k_test.jsonl`` the same questions from the test
split, ``tasks_gsm8k_train.jsonl`` the first 30 training problems.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest

from curator import Task
from curator.plugins import get_registry

DATA = Path(__file__).parent / "data"
MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


SOLUTIONS = _jsonl("tasks_gsm8k_solutions.jsonl")
TEST = _jsonl("tasks_gsm8k_test.jsonl")
TRAIN = _jsonl("tasks_gsm8k_train.jsonl")


def task(name: str) -> Task:
    return get_registry().task(name)


def test_every_task_is_registered_through_the_entry_point():
    entries = {e.name: e for e in get_registry().all() if e.kind == "task"}
    for name in ("gsm8k", "numeric", "math", "multiple_choice", "yes_no"):
        assert entries[name].plugin == "tasks"
        assert isinstance(entries[name].obj, Task)
        assert entries[name].obj.name == name


# GSM8K on the real GPT-3 solutions and references


def test_gsm8k_correctness_agrees_with_every_human_label():
    gsm8k = task("gsm8k")
    assert [row["question"] for row in SOLUTIONS] == [row["question"] for row in TEST]
    predicted, labels = [], []
    for row, gold in zip(SOLUTIONS, TEST, strict=True):
        reference = gsm8k.normalize_reference(gold["answer"])
        for model in MODELS:
            answer = gsm8k.extract(row[model]["solution"])
            predicted.append(gsm8k.equal(answer, reference))
            labels.append(row[model]["is_correct"])
    assert len(labels) == 200
    assert predicted == labels
    assert 0 < sum(labels) < len(labels)  # the sample holds positives and negatives


def test_gsm8k_batch_correctness_agrees_with_every_human_label():
    gsm8k = task("gsm8k")
    solutions = pa.array([row[m]["solution"] for row in SOLUTIONS for m in MODELS])
    references = pa.array([gold["answer"] for gold in TEST for _ in MODELS])
    labels = [row[m]["is_correct"] for row in SOLUTIONS for m in MODELS]
    correct = gsm8k.equal_batch(gsm8k.extract_batch(solutions), gsm8k.normalize_reference_batch(references))
    assert correct.to_pylist() == labels


def test_gsm8k_reference_is_the_number_after_the_last_hashes_without_commas():
    gsm8k = task("gsm8k")
    assert gsm8k.normalize_reference(TRAIN[0]["answer"]) == "72"
    for row in TRAIN:
        after_hashes = row["answer"].split("####")[-1].strip().replace(",", "")
        assert gsm8k.normalize_reference(row["answer"]) == after_hashes


def test_gsm8k_reference_reads_the_same_from_hashes_and_from_a_final_answer_line():
    gsm8k = task("gsm8k")
    for row, gold in zip(SOLUTIONS, TEST, strict=True):
        assert gsm8k.normalize_reference(row["ground_truth"]) == gsm8k.normalize_reference(gold["answer"])


def test_gsm8k_reads_negative_answers_from_real_solutions():
    gsm8k = task("gsm8k")
    solution = next(
        row[m]["solution"] for row in SOLUTIONS for m in MODELS if row[m]["solution"].endswith("A: -129025")
    )
    assert "975-130000" in solution  # a subtraction earlier in the text is not a sign
    assert gsm8k.extract(solution) == "-129025"


def test_gsm8k_truncated_solution_without_a_marker_takes_the_last_number():
    gsm8k = task("gsm8k")
    truncated = [row[m] for row in SOLUTIONS for m in MODELS if "\nA:" not in row[m]["solution"]]
    assert truncated and not any(s["is_correct"] for s in truncated)
    cut = next(s["solution"] for s in truncated if s["solution"].endswith("pay 5 * 1"))
    assert gsm8k.extract(cut) == "1"


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("She makes 9 * 2 = $18 every day.\nA: 18", "18"),
        ("The answer is $1,000.50.", "1000.5"),
        ("Her balance is 5 - 8 = -3.\nThe answer is -3.", "-3"),
        ("So x = -3", "-3"),
        ("16-3-4 = 9 eggs are left, so 9", "9"),
        ("The discount is 20%. The answer is 25%.", "25"),
        ("#### 18.0", "18"),
        ("Therefore, the answer is 7 apples.", "7"),
        ("48/2 = 24 clips --> 72", "72"),
        ("The answer is 5, not 6.\nA: 6 apples", "6"),  # the last marker wins
        ("It costs .50 dollars.", "0.5"),
        ("A: 007", "7"),
        ("The answer is -0.0", "0"),
        ("The answer is 12345678901234567890.10", "12345678901234567890.1"),  # exact, no float
        ("I computed 3 + 4 = 7. The answer is", None),  # a marker with no number after it
        ("No numbers here.", None),
        ("", None),
    ],
)
def test_gsm8k_extract(text, answer):
    assert task("gsm8k").extract(text) == answer


def test_gsm8k_equal_is_numeric():
    gsm8k = task("gsm8k")
    assert gsm8k.equal(gsm8k.extract("A: 18.0"), gsm8k.normalize_reference("#### 18"))
    assert gsm8k.equal("18.0", "18")  # raw spellings too
    assert gsm8k.equal("1000.50", "1000.5")
    assert not gsm8k.equal("18", "-18")
    assert not gsm8k.equal("18.000001", "18")
    assert not gsm8k.equal(None, None)
    assert not gsm8k.equal(None, "18")


def test_numeric_reference_takes_the_leading_number_of_an_answer_with_units():
    numeric = task("numeric")
    assert numeric.normalize_reference("9 (apples)") == "9"
    assert numeric.normalize_reference(" -2.50 (degrees)") == "-2.5"
    assert numeric.normalize_reference("8.0") == "8"
    assert numeric.normalize_reference("#### 1,200") == "1200"
    assert numeric.normalize_reference("(apples)") is None


def test_numeric_equal_has_a_tolerance():
    numeric = task("numeric")
    assert numeric.equal("0.3333333", "0.33333333")
    assert numeric.equal("18", "18.0000001")
    assert not numeric.equal("18", "18.00001")
    assert not numeric.equal(None, None)
    assert numeric.extract("The answer is 9 apples.") == "9"


# The batch methods are the per-row methods, row for row


def _real_texts() -> list[str | None]:
    texts: list[str | None] = [row[m]["solution"] for row in SOLUTIONS for m in MODELS]
    texts += [row["ground_truth"] for row in SOLUTIONS]
    texts += [row["answer"] for row in TEST + TRAIN]
    return [*texts, None, "", "9 (apples)", "Natalia sold 48/2 = 24 clips."]


_PIECES = (
    "-", "--", "$", "$-", ",", ".", "..", "%", "5", "12", "0", "007", "1,000", "-.5", "1.2.3", "a", "x", "A",
    "é", "日本", " ", "\n", "\r", "(", ")", "=", "A:", "\nA:", "####", "The answer is", "the answer is",
    "Therefore, the answer is", "-->",
)  # fmt: skip


def _adversarial_texts(count: int) -> list[str]:
    """Short texts made of the pieces where the number and marker rules have edges."""
    rng = random.Random(20240907)
    return ["".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 12))) for _ in range(count)]


@pytest.mark.parametrize("name", ["gsm8k", "numeric"])
@pytest.mark.parametrize("source", ["real", "adversarial"])
def test_batch_extraction_matches_per_row(name, source):
    parser = task(name)
    texts = _real_texts() if source == "real" else _adversarial_texts(20_000)
    array = pa.array(texts, pa.string())
    expected = [None if t is None else parser.extract(t) for t in texts]
    assert parser.extract_batch(array).to_pylist() == expected
    expected = [None if t is None else parser.normalize_reference(t) for t in texts]
    assert parser.normalize_reference_batch(array).to_pylist() == expected


@pytest.mark.parametrize("name", ["gsm8k", "numeric"])
def test_batch_equality_matches_per_row(name):
    parser = task(name)
    values = ["18", "18.0", "18.0000001", "-18", "0", "-0", "-0.0", "007", ".5", "0.5", "1000.5", "1000.50"]
    values += ["1,000.5", "1e3", "9" * 400, "abc", "", None]
    rng = random.Random(7)
    pairs = [(rng.choice(values), rng.choice(values)) for _ in range(2_000)]
    a, b = pa.array([p[0] for p in pairs], pa.string()), pa.array([p[1] for p in pairs], pa.string())
    result = parser.equal_batch(a, b)
    assert result.null_count == 0
    assert result.to_pylist() == [parser.equal(x, y) for x, y in pairs]


def test_batch_methods_accept_chunked_and_large_strings_and_return_strings():
    gsm8k = task("gsm8k")
    chunked = pa.chunked_array([["A: 18", None], ["The answer is $1,000.50."]])
    assert gsm8k.extract_batch(chunked).to_pylist() == ["18", None, "1000.5"]
    large = pa.array(["#### 1,000", "x"], pa.large_string())
    answers = gsm8k.normalize_reference_batch(large)
    assert answers.type == pa.string()
    assert answers.to_pylist() == ["1000", None]
    assert gsm8k.extract_batch(pa.array([], pa.string())).to_pylist() == []
    assert gsm8k.extract_batch(pa.array([None, None])).to_pylist() == [None, None]


# MATH


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("So the probability is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("The answer is \\fbox{\\dfrac12}.", "\\frac{1}{2}"),
        ("\\boxed{0.5}", "\\frac{1}{2}"),
        ("\\boxed{1/2}", "\\frac{1}{2}"),
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),  # nested braces
        ("\\boxed{\\{1, 2\\}}", "\\{1,2\\}"),
        ("First \\boxed{3}, then corrected: \\boxed{4}", "4"),
        ("\\boxed{x = \\sqrt3}", "\\sqrt{3}"),
        ("\\boxed{\\sqrt 3}", "\\sqrt{3}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3,\\frac{\\pi}{2})"),
        ("\\boxed{10\\text{ cm}}", "10"),
        ("\\boxed{10 \\text{cm}^2}", "10"),
        ("\\boxed{90^\\circ}", "90"),
        ("\\boxed{\\$5}", "5"),
        ("\\boxed{\\text{(A)}}", "\\text{(A)}"),
        ("\\boxed{(\\text{A})}", "(\\text{A})"),
        ("\\boxed{\\frac{1}{2}\\text{ inch}}", "\\frac{1}{2}"),
        ("\\boxed{\\frac\\pi2}", "\\frac{\\pi}{2}"),
        ("\\boxed{.5}", "\\frac{1}{2}"),
        ("\\boxed{\\sqrt[3]{2}}", "\\sqrt[3]{2}"),
        ("The answer is 1/2.", None),  # no box, no answer
        ("\\boxed{\\frac{1}{2}", None),  # never closed
        ("\\boxed{}", None),
    ],
)
def test_math_extract(text, answer):
    assert task("math").extract(text) == answer


def test_math_equal_after_normalisation_and_missing_answers_never_equal():
    math = task("math")
    assert math.equal(math.extract("\\boxed{0.5}"), math.extract("\\boxed{\\frac12}"))
    assert math.equal(math.extract("\\boxed{\\tfrac{3}{4}}"), math.normalize_reference("3/4"))
    assert not math.equal(math.extract("\\boxed{2}"), math.extract("\\boxed{3}"))
    assert math.extract("no box") is None
    assert not math.equal(math.extract("no box"), math.extract("no box either"))


def test_math_reference_is_the_boxed_answer_of_a_solution_or_the_answer_itself():
    math = task("math")
    solution = "Half of $4$ is $2$, so the answer is $\\boxed{2}$."
    assert math.normalize_reference(solution) == "2"
    assert math.normalize_reference("\\dfrac{1}{2}") == "\\frac{1}{2}"


# Multiple choice and yes/no


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Therefore, among A through E, the answer is (B).", "B"),
        ("Because the train leaves at noon, the answer is (C).", "C"),
        ("Because it is raining, the answer is Because.", None),  # a capital inside a word is no answer
        ("So the answer is (b).", "B"),
        ("The answer is B. Because A is too small.", "B"),
        ("Options (A) and (C) fail; --> D", "D"),
        ("The answer is A's cousin.", None),
        ("Because of the rain", None),
        (" (B).", "B"),  # a stage-2 completion alone
        ("b", "B"),  # a gold label
        ("(A) is too early, so it must be (C)", "C"),  # no marker: the last parenthesised letter
        ("I think A is right", None),  # no marker: a lone capital in free text is not trusted
    ],
)
def test_multiple_choice_extract(text, answer):
    assert task("multiple_choice").extract(text) == answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Nobody lives forever. So the answer is yes.", "yes"),
        ("No doubt it flips twice. The answer is no.", "no"),
        ("The answer is: Yes, it does.", "yes"),
        ("The answer is not known", None),  # 'not' is not 'no'
        ("No, wait: yes", "yes"),  # no marker: the last token
        ("yesterday", None),
    ],
)
def test_yes_no_extract(text, answer):
    assert task("yes_no").extract(text) == answer


def test_yes_no_reference_accepts_booleans():
    yes_no = task("yes_no")
    assert yes_no.normalize_reference("True") == "yes"
    assert yes_no.normalize_reference("false") == "no"
    assert yes_no.normalize_reference("no") == "no"


def test_closed_answer_tasks_keep_nulls_in_batches():
    for name in ("multiple_choice", "yes_no", "math"):
        answers = task(name).extract_batch(pa.array([None, "The answer is (B), yes: \\boxed{B}"]))
        assert answers.to_pylist()[0] is None
        assert answers.to_pylist()[1] is not None
