"""``curator export``: the trainer's text, in the layouts TRL and LLaMA-Factory read."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator.cli import main
from curator.formats import format_row

ROWS = [
    {
        "id": "a",
        "question": "Tom has 2 eggs and buys 3. How many?",
        "rationale": "2 + 3 = 5. The answer is 5.",
        "answer": "5",
        "weight": 1.0,
        "dropped_by": None,
    },
    {
        "id": "b",
        "question": "Ali has 4 books and buys 1. How many?",
        "rationale": "4 + 1 = 6. The answer is 6.",
        "answer": "6",
        "weight": 1.0,
        "dropped_by": "correctness",
    },
    {
        "id": "c",
        "question": "Kai has 1 apple.",
        "rationale": "1.",
        "answer": "1",
        "weight": 0.0,
        "dropped_by": None,
    },
    {
        "id": "d",
        "question": "Lena has 7 cookies.",
        "rationale": "7. The answer is 7.",
        "answer": None,
        "weight": 1.5,
        "dropped_by": None,
    },
]


@pytest.fixture
def curated(tmp_path):
    path = tmp_path / "curated.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


def export(curated, tmp_path, *options):
    out = tmp_path / "out.jsonl"
    main(["export", str(curated), "--output", str(out), *options])
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_prompt_completion_is_the_trainers_text(curated, tmp_path):
    trained_on = [r for r in ROWS if r["weight"] > 0]
    for template in ("natural", "fine-tune-cot"):
        records = export(curated, tmp_path, "--format", "trl-prompt-completion", "--template", template)
        expected = [format_row(r, template) for r in trained_on]
        assert records == [{"prompt": e.prompt, "completion": e.completion} for e in expected]
    assert records[0] == {
        "prompt": ROWS[0]["question"] + " ###",
        "completion": " 2 + 3 = 5. The answer is 5. --> 5",
    }
    assert records[2]["completion"] == " 7. The answer is 7."  # no parsed answer: no "--> None"


def test_conversational_formats(curated, tmp_path, capsys):
    messages = export(curated, tmp_path, "--format", "trl-messages")
    assert messages[0] == {
        "messages": [
            {"role": "user", "content": ROWS[0]["question"]},
            {"role": "assistant", "content": ROWS[0]["rationale"]},
        ]
    }
    alpaca = export(curated, tmp_path, "--format", "alpaca")
    assert alpaca[1] == {"instruction": ROWS[1]["question"], "input": "", "output": ROWS[1]["rationale"]}
    sharegpt = export(curated, tmp_path, "--format", "sharegpt", "--extra", "id", "--extra", "weight")
    assert sharegpt[2] == {
        "conversations": [
            {"from": "human", "value": ROWS[3]["question"]},
            {"from": "gpt", "value": ROWS[3]["rationale"]},
        ],
        "id": "d",
        "weight": 1.5,
    }
    assert [r["id"] for r in sharegpt] == ["a", "b", "d"]
    cot = export(curated, tmp_path, "--format", "fine-tune-cot")
    assert cot[1] == {
        "prompt": ROWS[1]["question"] + " ###",
        "completion": " 4 + 1 = 6. The answer is 6. --> 6",
    }
    captured = capsys.readouterr()  # the summary on stdout, the note about weights on stderr
    assert "skipped 1 weight-0 rows" in captured.out and "--extra weight keeps them" in captured.err


def test_where_selects_the_negatives(curated, tmp_path):
    records = export(curated, tmp_path, "--format", "alpaca", "--where", "dropped_by=correctness")
    assert [r["instruction"] for r in records] == [ROWS[1]["question"]]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--where", "colour=red"], "no column 'colour'"),
        (["--extra", "colour"], "--extra column 'colour' not found"),
    ],
)
def test_bad_input_is_one_line_exit_2(curated, tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(curated), "--format", "alpaca", "--output", str(tmp_path / "x.jsonl"), *options])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "export",
                str(tmp_path / "none.parquet"),
                "--format",
                "alpaca",
                "--output",
                str(tmp_path / "x.jsonl"),
            ]
        )
    assert exit_info.value.code == 2 and "no such file" in capsys.readouterr().err
