"""Prompts (METHODS §2), built-in exemplars and reading question files."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator.backend import Message, SamplingParams
from curator.errors import CuratorError
from curator.generate.prompts import FewShotCoT, ZeroShotCoT, load_exemplars, make_prompting
from curator.plugins import get_registry
from curator.questions import QuestionFile, question_id

GSM8K = get_registry().task("gsm8k")


def test_zero_shot_cot_two_stages_as_in_fine_tune_cot():
    prompting = ZeroShotCoT()
    first = prompting.first("How many legs do 3 cats have?", SamplingParams(n=4, temperature=0.7))
    assert first.prompt == "Q: How many legs do 3 cats have?\nA: Let's think step by step."
    assert first.messages == (Message("user", first.prompt),)
    rationale = prompting.rationale(" Each cat has 4 legs, so 3 * 4 = 12.\n\nQ: Another question?")
    assert rationale == " Each cat has 4 legs, so 3 * 4 = 12.\n"
    second = prompting.second(first, rationale, SamplingParams(max_tokens=32))
    assert second.prompt == first.prompt + " Each cat has 4 legs, so 3 * 4 = 12.\nTherefore, the answer is"
    # chat: the rationale is the model's own turn and the answer prompt a follow-up user turn
    assert second.messages[1:] == (
        Message("assistant", "Each cat has 4 legs, so 3 * 4 = 12."),
        Message("user", "Therefore, the answer is"),
    )
    # the task reads the answer after the last marker: the stage-2 text, not a number in the rationale
    source = prompting.answer_source(rationale, " 12 legs.")
    assert GSM8K.extract(source) == "12"
    assert GSM8K.extract(prompting.answer_source(" 3 * 4 = 12.", " 13.")) == "13"


def test_few_shot_cot_uses_the_builtin_gsm8k_exemplars():
    exemplars = load_exemplars(None, "gsm8k")
    assert len(exemplars) == 8
    for exemplar in exemplars:
        assert re.search(r"The answer is -?\d+\.$", exemplar.answer)
        # every equation in a built-in exemplar is right
        for left, right in re.findall(r"(\d+(?: [-+*/] \d+)+) = \$?(\d+(?:\.\d+)?)", exemplar.answer):
            assert eval(left) == float(right), exemplar.answer  # noqa: S307 - our own arithmetic
    prompting = make_prompting("few-shot-cot", None, "gsm8k")
    assert isinstance(prompting, FewShotCoT)
    request = prompting.first("What is 2 + 2?", SamplingParams(n=15, temperature=1.1))
    assert request.prompt.startswith(f"Q: {exemplars[0].question}\nA: {exemplars[0].answer}\n\nQ: ")
    assert request.prompt.endswith("\n\nQ: What is 2 + 2?\nA:")
    assert request.prompt.count("\nA: ") == 8
    assert prompting.rationale(" 2 + 2 = 4. The answer is 4.\nQ: next") == " 2 + 2 = 4. The answer is 4."
    assert prompting.second(request, "x", SamplingParams()) is None


def test_exemplars_from_a_file_and_their_errors(tmp_path):
    path = tmp_path / "ex.jsonl"
    path.write_text(json.dumps({"question": "Q1?", "rationale": "R1. The answer is 1."}) + "\n\n")
    assert make_prompting("few-shot-cot", path, "math").prefix == "Q: Q1?\nA: R1. The answer is 1.\n\n"
    path.write_text('{"question": "Q1?", "answer": "A"}\n{"question": 3}\n')
    with pytest.raises(CuratorError, match=r"ex.jsonl: line 2 needs string 'question'"):
        load_exemplars(path, "gsm8k")
    with pytest.raises(CuratorError, match="few-shot-cot needs --exemplars for task 'math'"):
        load_exemplars(None, "math")


def test_gsm8k_raw_format_gets_stable_ids_and_normalised_references(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [
        {"question": "Ann has 3 apples. How many?", "answer": "She has <<3=3>>3.\n#### 1,003"},
        {"question": "Bob has 2 pears. How many?", "answer": "#### 2"},
        {"question": "Ann has 3 apples. How many?", "answer": "#### 3"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    questions = QuestionFile(path, GSM8K)
    assert questions.has_reference and questions.count() == 3
    read = list(questions)
    assert [q.reference for q in read] == ["1003", "2", "3"]
    first_id = question_id(rows[0]["question"])
    assert [q.id for q in read] == [first_id, question_id(rows[1]["question"]), f"{first_id}-2"]
    assert [q.id for q in QuestionFile(path, GSM8K)] == [q.id for q in read]


def test_jsonl_ids_and_references_may_be_numbers(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": 7, "question": "One?", "reference": 1}\n{"id": 8, "question": "Two?", "reference": 2}\n')
    assert [(q.id, q.reference) for q in QuestionFile(path, GSM8K)] == [("7", "1"), ("8", "2")]


def test_parquet_and_dataset_folder_inputs_with_integer_ids(tmp_path):
    table = pa.table({"id": [7, 8], "question": ["One?", "Two?"], "reference": ["1", "2"]})
    pq.write_table(table, tmp_path / "q.parquet")
    read = list(QuestionFile(tmp_path / "q.parquet", GSM8K))
    assert [(q.id, q.question, q.reference) for q in read] == [("7", "One?", "1"), ("8", "Two?", "2")]
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"question": ["Three?"]}).save_to_disk(str(tmp_path / "hf"))
    questions = QuestionFile(tmp_path / "hf", GSM8K)
    assert not questions.has_reference
    assert [q.question for q in questions] == ["Three?"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('{"question": "A?"}\n{"question": "B?"\n', r"q.jsonl:2: invalid JSON"),
        ('{"id": "a", "question": "A?"}\n{"id": "a", "question": "B?"}\n', r"q.jsonl:2: id 'a' already used on line 1"),
        ('{"id": "a", "question": "A?"}\n{"id": "b", "question": "  "}\n', r"q.jsonl:2: column 'question' is empty"),
        ('{"prompt": "A?"}\n', r"q.jsonl: missing required column 'question' \(has: prompt\)"),
        ('{"question": "A?", "id": ["x"]}\n', r"q.jsonl: column 'id' must be a string, got list"),
        ('{"question": "A?", "id": "a"}\n{"question": "B?", "id": 7}\n', r"q.jsonl:2: column 'id' is float here but str"),
        ('{"question": "A?"}\n{"question": 3}\n', r"q.jsonl:2: column 'question' must be a string, got int"),
        ('{"question": "A?"}\n{"question": null}\n', r"q.jsonl:2: column 'question' is null"),
    ],
)
def test_bad_question_files_name_the_row(tmp_path, lines, message):
    path = tmp_path / "q.jsonl"
    path.write_text(lines)
    with pytest.raises(CuratorError, match=message):
        list(QuestionFile(path, GSM8K))
