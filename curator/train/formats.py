"""How a curated row becomes training text: the one place both ``train`` and ``export`` use.

A row is split into a *prompt* (context, no loss by default) and a
*completion* (what the student learns to write). Keeping that split here,
rather than in the trainer, is what lets ``curator export`` hand TRL or
LLaMA-Factory exactly the text the built-in trainer would have trained on.
EOS is not part of the text: the trainer appends the token, and TRL and
LLaMA-Factory append their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from curator.errors import CuratorError


@dataclass(frozen=True)
class Example:
    """One training example as text."""

    prompt: str
    completion: str


def fine_tune_cot(question: str, rationale: str, answer: str | None) -> Example:
    """Fine-tune-CoT's student format: ``{q} ###`` then `` {rationale} --> {answer}``.

    A row without a parsed answer (possible among negatives) keeps its
    rationale and loses the ``-->`` part rather than teaching ``--> None``.
    """
    completion = f" {rationale} --> {answer}" if answer is not None else f" {rationale}"
    return Example(f"{question} ###", completion)


def natural(question: str, rationale: str, answer: str | None = None) -> Example:
    """The few-shot prompt's own layout (``Q: …\\nA:``), so the model trains on what it will see."""
    return Example(f"Q: {question}\nA:", f" {rationale}")


def messages(question: str, rationale: str) -> list[dict[str, str]]:
    """A single user/assistant exchange, the shape chat templates and TRL's conversational format take."""
    return [{"role": "user", "content": question}, {"role": "assistant", "content": rationale}]


def chat(question: str, rationale: str, tokenizer: Any) -> Example:
    """Render the model's chat template and split it where the assistant's turn begins."""
    if not getattr(tokenizer, "chat_template", None):
        raise CuratorError(
            "format 'chat': the model's tokenizer has no chat template (use natural or fine-tune-cot)"
        )
    turns = messages(question, rationale)
    prompt = tokenizer.apply_chat_template(turns[:1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(turns, tokenize=False)
    if not full.startswith(prompt):
        raise CuratorError(
            "format 'chat': the chat template does not render the prompt as a prefix of the dialogue"
        )
    return Example(prompt, full[len(prompt) :])


TEXT_FORMATS: dict[str, Callable[[str, str, str | None], Example]] = {
    "natural": natural,
    "fine-tune-cot": fine_tune_cot,
}


def format_row(row: dict[str, Any], format: str, tokenizer: Any = None) -> Example:
    """The example for one row (``question``, ``rationale``, optional ``answer``) in ``format``."""
    if format == "chat":
        return chat(row["question"], row["rationale"], tokenizer)
    try:
        build = TEXT_FORMATS[format]
    except KeyError:
        raise CuratorError(f"unknown format '{format}' (one of natural, fine-tune-cot, chat)") from None
    return build(row["question"], row["rationale"], row.get("answer"))


EXPORT_FORMATS = ("trl-prompt-completion", "trl-messages", "alpaca", "sharegpt", "fine-tune-cot")


def export_record(row: dict[str, Any], format: str, template: str = "natural") -> dict[str, Any]:
    """One JSONL record in ``format``, the layouts TRL and LLaMA-Factory read.

    ``template`` picks the text layout for the prompt/completion formats
    (``natural`` or ``fine-tune-cot``); the conversational formats carry the
    raw question and rationale, and the trainer's chat format renders the
    same two turns through the model's template.
    """
    question, rationale = row["question"], row["rationale"]
    if format == "trl-prompt-completion":
        example = format_row(row, template)
        return {"prompt": example.prompt, "completion": example.completion}
    if format == "fine-tune-cot":
        example = fine_tune_cot(question, rationale, row.get("answer"))
        return {"prompt": example.prompt, "completion": example.completion}
    if format == "trl-messages":
        return {"messages": messages(question, rationale)}
    if format == "alpaca":
        return {"instruction": question, "input": "", "output": rationale}
    if format == "sharegpt":
        turns = messages(question, rationale)
        return {
            "conversations": [
                {"from": "human" if t["role"] == "user" else "gpt", "value": t["content"]} for t in turns
            ]
        }
    raise CuratorError(f"unknown export format '{format}' (one of {', '.join(EXPORT_FORMATS)})")
