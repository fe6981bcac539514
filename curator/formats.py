"""How a question and its rationale become text: the layouts every command shares.

A row is split into a *prompt* (context, no loss by default) and a
*completion* (what the student learns to write). ``train`` learns from these
layouts, ``export`` writes them for TRL or LLaMA-Factory (so training
elsewhere sees exactly the text the built-in trainer would have trained on),
``eval`` asks its questions in them (so an adapter is asked the way it was
taught), ``generate``'s prompts and the model-backed filters score in the
natural one. EOS is not part of the text: the trainer appends the token,
and TRL and LLaMA-Factory append their own.

Questions and rationales enter every layout the trainer and the exports
use stripped of surrounding whitespace: a rationale as a completions
endpoint produced it begins with a space, and ``A:`` + `` `` + it would
teach the model to write two (the filters' scoring texts are the exception,
see :func:`natural_texts`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from curator.errors import CuratorError

EXPORT_FORMATS = ("trl-prompt-completion", "trl-messages", "alpaca", "sharegpt", "fine-tune-cot")
"""The record shapes ``curator export`` writes."""

SHAREGPT_ROLES = {"user": "human", "assistant": "gpt"}
"""ShareGPT's ``from`` tags (LLaMA-Factory's defaults)."""

QUESTION_STOP = "\nQ:"
"""Where a completion in the natural layout ends besides EOS: a model that starts a new question is done."""


@dataclass(frozen=True)
class Example:
    """One example as text: the prompt, and the completion the model writes after it."""

    prompt: str
    completion: str

    @property
    def text(self) -> str:
        return self.prompt + self.completion


def fine_tune_cot(question: str, rationale: str, answer: str | None) -> Example:
    """Fine-tune-CoT's student format: ``{q} ###`` then `` {rationale} --> {answer}``.

    A row without a parsed answer (possible among negatives) keeps its
    rationale and loses the ``-->`` part rather than teaching ``--> None``.
    """
    rationale = rationale.strip()
    completion = f" {rationale} --> {answer}" if answer is not None else f" {rationale}"
    return Example(f"{question.strip()} ###", completion)


def natural(question: str, rationale: str = "", answer: str | None = None) -> Example:
    """The few-shot prompt's own layout (``Q: …\\nA:``), so the model trains on what it will see."""
    return Example(f"Q: {question.strip()}\nA:", f" {rationale.strip()}")


def natural_texts(questions: Sequence[str], rationales: Sequence[str]) -> tuple[list[str], list[str]]:
    """(prompts, completions) of many rows in the natural layout: what the model-backed filters score.

    Unlike the trainer's layout, the texts are not stripped: the filters
    score ``Q: {question}\nA: {rationale}`` with the rationale as produced,
    as IWSI's code does, and their cached scores stay valid.
    """
    return [f"Q: {q}\nA:" for q in questions], [f" {r}" for r in rationales]


def stops(format: str) -> tuple[str, ...]:
    """Where a completion in ``format`` ends besides EOS."""
    return (QUESTION_STOP,) if format == "natural" else ()


def messages(question: str, rationale: str, system: str | None = None) -> list[dict[str, str]]:
    """A single user/assistant exchange (after a system turn, if given): what chat templates and TRL take."""
    turns = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": question.strip()}, {"role": "assistant", "content": rationale.strip()}]


def chat(question: str, rationale: str, tokenizer: Any, system: str | None = None) -> Example:
    """Render the model's chat template and split it where the assistant's turn begins.

    The dialogue ends with the assistant's end-of-turn: whitespace a template
    writes after it is never generated, so it is not learned (and TRL, which
    appends EOS to a completion not ending with it, would add a second).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise CuratorError(
            "format 'chat': the model's tokenizer has no chat template (use natural or fine-tune-cot)"
        )
    turns = messages(question, rationale, system)
    prompt = tokenizer.apply_chat_template(turns[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(turns, tokenize=False)
    if not full.startswith(prompt):
        raise CuratorError(
            "format 'chat': the chat template does not render the prompt as a prefix of the dialogue"
        )
    return Example(prompt, full[len(prompt) :].rstrip())


_TEXT_LAYOUTS: dict[str, Callable[[str, str, str | None], Example]] = {
    "natural": natural,
    "fine-tune-cot": fine_tune_cot,
}

TEMPLATES = tuple(_TEXT_LAYOUTS)
"""The layouts that are plain text, needing no tokenizer (``export --template``)."""

FORMATS = (*TEMPLATES, "chat")
"""Every prompt/completion layout (``train --format``, ``eval --format``)."""


def format_row(row: dict[str, Any], format: str, tokenizer: Any = None) -> Example:
    """The example for one row (``question``, ``rationale``, optional ``answer``) in ``format``."""
    if format == "chat":
        return chat(row["question"], row["rationale"], tokenizer)
    try:
        build = _TEXT_LAYOUTS[format]
    except KeyError:
        raise CuratorError(f"unknown format '{format}' (one of {', '.join(FORMATS)})") from None
    return build(row["question"], row["rationale"], row.get("answer"))


def prompt_of(question: str, format: str, tokenizer: Any = None) -> str:
    """The prompt alone, as a model trained in ``format`` is asked ``question``."""
    return format_row({"question": question, "rationale": ""}, format, tokenizer).prompt


WEIGHTED_FORMATS = ("trl-prompt-completion", "trl-messages", "alpaca", "sharegpt")
"""The export formats whose readers take extra columns (TRL's and LLaMA-Factory's loaders): ``weight`` rides along.

Fine-tune-CoT's records are OpenAI fine-tuning files, which hold a prompt and a completion only."""


def export_record(
    row: dict[str, Any], format: str, template: str = "natural", *, system: str | None = None, tokenizer: Any = None
) -> dict[str, Any]:
    """One JSONL record in ``format``, the layouts TRL and LLaMA-Factory read.

    ``template`` picks the text layout for ``trl-prompt-completion``
    (``natural`` or ``fine-tune-cot``), the trainer's own. The conversational
    formats carry the question and rationale as turns, after ``system``'s
    turn when given, for the trainer elsewhere to render with its template;
    ``trl-messages`` with a ``tokenizer`` renders them with that tokenizer's
    chat template instead, into the prompt and completion ``train --format
    chat`` learns from.
    """
    question, rationale = row["question"], row["rationale"]
    if format == "trl-prompt-completion":
        example = format_row(row, template)
    elif format == "fine-tune-cot":
        example = fine_tune_cot(question, rationale, row.get("answer"))
    elif format == "trl-messages" and tokenizer is not None:
        example = chat(question, rationale, tokenizer, system)
    elif format == "trl-messages":
        return {"messages": messages(question, rationale, system)}
    elif format in ("alpaca", "sharegpt"):
        turns = messages(question, rationale)
        said = {"system": system} if system else {}
        if format == "alpaca":
            return {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"], **said}
        return {"conversations": [{"from": SHAREGPT_ROLES[t["role"]], "value": t["content"]} for t in turns], **said}
    else:
        raise CuratorError(f"unknown export format '{format}' (one of {', '.join(EXPORT_FORMATS)})")
    return {"prompt": example.prompt, "completion": example.completion}
