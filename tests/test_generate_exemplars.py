"""``curator generate --exemplars``: the papers' few-shot exemplars (Wei et al. 2022) reach the server as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("openai")

from helpers_cli import exit_code  # noqa: E402

from curator.testing import openai_server  # noqa: E402

EXEMPLARS = Path(__file__).resolve().parent.parent / "examples" / "gsm8k" / "wei2022_cot_exemplars.jsonl"


def test_the_shipped_file_holds_wei_et_al_s_eight_gsm8k_exemplars():
    rows = [json.loads(line) for line in EXEMPLARS.read_text().splitlines()]
    assert len(rows) == 8
    assert rows[0]["question"].startswith("There are 15 trees in the grove.")
    assert rows[-1]["answer"].endswith("23 - 15 is 8. The answer is 8.")
    assert [row["answer"].rsplit(" ", 1)[-1] for row in rows] == ["6.", "5.", "39.", "8.", "9.", "29.", "33.", "8."]


def test_generate_with_exemplars_sends_them_before_the_question(stub, tmp_path, monkeypatch):
    seen: list[str] = []
    respond = openai_server.respond

    def recording(body, config):
        seen.append(body["prompt"])
        return respond(body, config)

    monkeypatch.setattr(openai_server, "respond", recording)
    server = stub()
    question = "Sam has 3 apples and buys 4 more. How many apples does he have?"
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": question, "answer": "3 + 4 = 7\n#### 7"}) + "\n")
    args = ["generate", "--input", str(questions), "--output", str(tmp_path / "out"), "--task", "gsm8k",
            "--backend", "openai", "--model", "stub-model", "--base-url", server.base_url, "--no-progress",
            "--prompt", "few-shot-cot", "--exemplars", str(EXEMPLARS)]
    assert exit_code(args) == 0
    shots = [json.loads(line) for line in EXEMPLARS.read_text().splitlines()]
    expected = "".join(f"Q: {s['question']}\nA: {s['answer']}\n\n" for s in shots) + f"Q: {question}\nA:"
    assert seen == [expected]
