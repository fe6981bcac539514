"""Common dataset shapes, mapped to the columns curator reads.

Hugging Face datasets of reasoning problems come in a few shapes, none of
them curator's. Each is mapped batch by batch, for what the reader needs:

- GSM8K (``question``, ``answer``): the answer is a worked solution ending in
  ``#### N``. ``reference`` is what follows the last ``####``; where
  rationales are read (build, train, export) the solution is the rationale,
  its calculator annotations ``<<…>>`` removed and ``#### N`` written
  ``The answer is N.``, the few-shot layout the tasks parse.
- MATH (``problem``, ``solution``): ``question`` is the problem;
  ``reference`` is the dataset's ``answer`` column where it has one
  (MATH-500), else the content of the solution's last ``\\boxed{}``; the
  solution is the rationale.
- chats (``messages``: a list of ``{role, content}``): the user turn is the
  question and the assistant turn the rationale; system turns are left out
  (a system prompt is an export option, not data) and a row with more than
  one exchange is refused, as curator's rows are single exchanges.

A table that already has curator's columns is read as it is. The columns a
mapping consumes are dropped (a GSM8K ``answer`` left in would read as the
rationale's parsed answer); every other column is carried through. Where a
candidate table is read and the dataset has no ``id``, a question's id is
the hash of its text that ``curator generate`` gives a question without
one, so a question's rows form one group.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pyarrow as pa

from curator.errors import CuratorError

_CALCULATOR = re.compile(r"<<[^<>]*>>")
_FINAL = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)
_BOXED = "\\boxed{"
_FIRST = ("id", "question", "rationale", "reference")

Mapped = dict[str, list]
"""Column name -> values, for the columns a shape produces."""


def gsm8k_rationale(answer: str) -> str:
    """A GSM8K reference solution as a rationale in the few-shot format."""
    text = _CALCULATOR.sub("", answer)
    return _FINAL.sub(lambda m: f"The answer is {m.group(1).replace(',', '')}.", text).strip()


def gsm8k_reference(answer: str) -> str:
    """The final answer of a GSM8K solution: what follows its last ``####`` (all of it when there is none)."""
    return answer.rpartition("####")[2].strip()


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{…}``, braces balanced; None when there is none or it never closes."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, begin = 0, start + len(_BOXED)
    for index, char in enumerate(text[begin:], begin):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return text[begin:index]
    return None


def _gsm8k(columns: dict[str, list], rationales: bool, label: str, first_row: int) -> tuple[Mapped, set[str]]:
    answers = columns["answer"]
    mapped: Mapped = {"reference": [None if a is None else gsm8k_reference(a) for a in answers]}
    if rationales:
        mapped["rationale"] = [None if a is None else gsm8k_rationale(a) for a in answers]
    return mapped, {"answer"}


def _math(columns: dict[str, list], rationales: bool, label: str, first_row: int) -> tuple[Mapped, set[str]]:
    solutions = columns["solution"]
    gold = columns.get("answer") or [None if s is None else last_boxed(s) for s in solutions]
    mapped: Mapped = {"question": columns["problem"], "reference": gold}
    if rationales:
        mapped["rationale"] = solutions
    return mapped, {"problem", "solution", "answer"}


def _messages(columns: dict[str, list], rationales: bool, label: str, first_row: int) -> tuple[Mapped, set[str]]:
    questions: list[str | None] = []
    answers: list[str | None] = []
    for row, chat in enumerate(columns["messages"], first_row):
        turns = [t for t in chat or [] if t.get("role") != "system"]
        roles = [t.get("role") for t in turns]
        if roles not in (["user"], ["user", "assistant"]):
            raise CuratorError(
                f"{label}: row {row}: column 'messages' has turns {roles}; one user turn, then at most one "
                "assistant turn, is read"
            )
        questions.append(turns[0].get("content"))
        answers.append(turns[1].get("content") if len(turns) > 1 else None)
    mapped: Mapped = {"question": questions}
    if rationales:
        mapped["rationale"] = answers
    return mapped, {"messages"}


_Shape = Callable[[dict[str, list], bool, str, int], tuple[Mapped, set[str]]]


def _shape_of(names: list[str]) -> tuple[str, _Shape] | None:
    present = set(names)
    if "question" in present and "answer" in present and "rationale" not in present:
        return "GSM8K", _gsm8k
    if {"problem", "solution"} <= present and "question" not in present:
        return "MATH", _math
    if "messages" in present and "question" not in present:
        return "messages", _messages
    return None


def map_columns(batch: pa.RecordBatch, required: tuple[str, ...], label: str, first_row: int) -> pa.RecordBatch:
    """``batch`` in curator's columns for a reader that needs ``required``; ``first_row`` (1-based) names rows."""
    names = batch.schema.names
    shape = _shape_of(names)
    rationales = "rationale" in required
    mapped: Mapped = {}
    consumed: set[str] = set()
    if shape is not None:
        needed = {"GSM8K": ("question", "answer"), "MATH": ("problem", "solution"), "messages": ("messages",)}[shape[0]]
        columns = {name: batch.column(name).to_pylist() for name in (*needed, "answer") if name in names}
        mapped, consumed = shape[1](columns, rationales, label, first_row)
    question = mapped.get("question") or (batch.column("question").to_pylist() if "question" in names else None)
    if "id" in required and "id" not in names and question is not None:
        from curator.questions import question_id

        mapped["id"] = [None if q is None else question_id(q) for q in question]
    if "reference" in names:  # the dataset's own gold answer wins
        mapped.pop("reference", None)
    carried = {n: batch.column(n) for n in names if n not in consumed and n not in mapped}
    columns = {n: pa.array(values, pa.string()) for n, values in mapped.items()}
    first = [n for n in _FIRST if n in columns or n in carried]
    order = first + [n for n in carried if n not in first]
    result = pa.RecordBatch.from_arrays([columns[n] if n in columns else carried[n] for n in order], names=order)
    missing = sorted((c for c in required if c not in result.schema.names), key=lambda c: c == "id")  # id follows
    if missing:
        read_as = f"read as {shape[0]}, " if shape else ""
        raise CuratorError(
            f"{label}: missing required column '{missing[0]}' ({read_as}has: {', '.join(names)}; "
            "GSM8K question/answer, MATH problem/solution and messages chats are mapped)"
        )
    return result
