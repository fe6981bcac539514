"""Prompting strategies: zero-shot CoT in two stages, and few-shot CoT (METHODS §2).

Every request carries its prompt both as completion text and as chat
messages, so a chat model gets the same words: one user message, and for the
zero-shot answer stage a follow-up turn after the model's own rationale.

Both strategies ask in the natural layout of :mod:`curator.formats`, and
completions are cut at its stop, the next ``\\nQ:``: a model that starts a
new question has finished its answer. For zero-shot CoT the task
parses ``rationale + "\\nTherefore, the answer is" + answer_text``, so a
parser that reads the first number after its last marker sees exactly the
stage-2 answer, and a ``\\boxed{}`` parser still finds one in the rationale.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import ClassVar

from curator.backend import Message, Request, SamplingParams
from curator.errors import CuratorError
from curator.formats import QUESTION_STOP, natural

STEP_BY_STEP = "Let's think step by step."
ANSWER_TRIGGER = "Therefore, the answer is"
BUILTIN_EXEMPLARS = {"gsm8k": "gsm8k_exemplars.jsonl", "numeric": "gsm8k_exemplars.jsonl"}


@dataclass(frozen=True)
class Exemplar:
    question: str
    answer: str


class Prompting(ABC):
    """Builds the requests for one question and reads the rationale and answer out of them."""

    name: ClassVar[str]
    two_stage: ClassVar[bool] = False

    @abstractmethod
    def first(self, question: str, params: SamplingParams) -> Request:
        """The request that samples the rationales."""

    def rationale(self, text: str) -> str:
        """The rationale in a first-stage completion: cut at the next question."""
        cut = text.find(QUESTION_STOP)
        return text if cut < 0 else text[:cut]

    def second(self, first: Request, rationale: str, params: SamplingParams) -> Request | None:
        """The request that asks for the answer after ``rationale``, if there is a second stage."""
        return None

    def answer_source(self, rationale: str, answer_text: str | None) -> str:
        """The text the task parses the answer from."""
        return rationale


class ZeroShotCoT(Prompting):
    """Fine-tune-CoT's teacher: ``Let's think step by step.``, then ``Therefore, the answer is``."""

    name = "zero-shot-cot"
    two_stage = True

    def first(self, question: str, params: SamplingParams) -> Request:
        return Request.single_turn(natural(question, STEP_BY_STEP).text, params)

    def second(self, first: Request, rationale: str, params: SamplingParams) -> Request:
        rationale = rationale.rstrip()
        messages = (*first.messages, Message("assistant", rationale.strip()), Message("user", ANSWER_TRIGGER))
        return Request(f"{first.prompt}{rationale}\n{ANSWER_TRIGGER}", messages, params)

    def answer_source(self, rationale: str, answer_text: str | None) -> str:
        return f"{rationale}\n{ANSWER_TRIGGER}{answer_text or ''}"


class FewShotCoT(Prompting):
    """LMSI / IWSI self-generation: exemplars, then ``Q: {question}\\nA:``."""

    name = "few-shot-cot"

    def __init__(self, exemplars: list[Exemplar]) -> None:
        self.prefix = "".join(natural(e.question, e.answer).text + "\n\n" for e in exemplars)

    def first(self, question: str, params: SamplingParams) -> Request:
        return Request.single_turn(self.prefix + natural(question).prompt, params)


def load_exemplars(path: str | Path | None, task: str) -> list[Exemplar]:
    """Exemplars from a JSONL file (``question`` and ``answer`` or ``rationale``), or the built-in ones."""
    if path is None:
        if task not in BUILTIN_EXEMPLARS:
            known = ", ".join(sorted(BUILTIN_EXEMPLARS))
            raise CuratorError(f"few-shot-cot needs --exemplars for task '{task}' (built-in exemplars: {known})")
        lines = files("curator").joinpath("data").joinpath(BUILTIN_EXEMPLARS[task]).read_text().splitlines()
        where = f"built-in {BUILTIN_EXEMPLARS[task]}"
    else:
        try:
            data = Path(path).read_bytes()
            lines = data.decode("utf-8").splitlines()
        except OSError as exc:
            raise CuratorError(f"{path}: cannot read exemplars ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:
            at = data.count(b"\n", 0, exc.start) + 1
            raise CuratorError(f"{path}:{at}: not UTF-8 text (byte {data[exc.start]:#04x})") from None
        where = str(path)
    exemplars = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise CuratorError(f"{where}: line {number} is not JSON ({exc})") from exc
        answer = record.get("answer", record.get("rationale")) if isinstance(record, dict) else None
        if not isinstance(answer, str) or not isinstance(record.get("question"), str):
            raise CuratorError(f"{where}: line {number} needs string 'question' and 'answer' (or 'rationale')")
        exemplars.append(Exemplar(record["question"].strip(), answer.strip()))
    if not exemplars:
        raise CuratorError(f"{where}: no exemplars")
    return exemplars


PROMPTS = (ZeroShotCoT.name, FewShotCoT.name)
"""The strategies ``--prompt`` names."""


def make_prompting(name: str, exemplars: str | Path | None, task: str) -> Prompting:
    """The strategy called ``name`` (``--prompt``)."""
    if name == ZeroShotCoT.name:
        return ZeroShotCoT()
    if name == FewShotCoT.name:
        return FewShotCoT(load_exemplars(exemplars, task))
    raise CuratorError(f"unknown prompt '{name}' (choose {' or '.join(PROMPTS)})")
