"""The MATH task: the last ``\\boxed{}`` answer, in the normal form of the MATH benchmark.

MATH answers are LaTeX, and the same value has many spellings
(``\\dfrac12``, ``\\frac{1}{2}``, ``0.5``, ``1/2``). The normaliser follows
the rules the MATH authors published with the dataset, so accuracies stay
comparable with published ones. It differs where the published rules mangle
an answer: spaces go before ``\\sqrt``/``\\frac`` arguments are repaired (so
``\\sqrt 3`` becomes ``\\sqrt{3}``, not ``\\sqrt{}3``), a macro argument
(``\\sqrt\\pi``, ``\\frac\\pi2``) is braced whole, ``\\sqrt[3]`` is left
alone, and units are cut at a ``\\text{`` that follows a value (a digit or a
closing bracket), or, as the published rule does, at a ``\\text{ `` with a
space after anything (``2\\pi\\text{ m}`` is ``2\\pi``): the published rule
cut only there, so ``10\\text{cm}`` kept its unit, and also where nothing came
before, so ``\\text{ (A)}`` became empty.

``parse`` says where the answer is. ``boxed`` (the task ``math``, as Dust
into Gold and the MATH authors read it): the last ``\\boxed{}``; a rationale
without one (or with an empty one) has no answer, so it is never correct and
never votes. ``answer_line`` (the task ``math:answer_line``): the last
``\\boxed{}``, else the final "… answer is …" statement (``The answer is
$\\frac{1}{2}$.``, Minerva's ``Final Answer: The final answer is $5$. I hope
it is correct.``): the first ``$…$`` on its line, or the rest of the line.
A gold solution without a boxed answer is taken as the answer itself.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from curator import CuratorError, Task

_BOX_OPENERS = ("\\boxed{", "\\fbox{")
_REMOVED = ("\\left", "\\right", "^{\\circ}", "^\\circ", "\\$")
_UNITS = "\\text{"
_VALUE_END = re.compile(r"[0-9})]\s*$")
_MACRO = re.compile(r"\\[A-Za-z]+")
_SQRT_ARGUMENT = re.compile(r"\\sqrt(\\[A-Za-z]+|[^{\\[])")
_FRAC = "\\frac"
_INTEGER = re.compile(r"-?[0-9]+")
_ANSWER_IS = re.compile(r"answer is\s*:?\s*", re.IGNORECASE)
_INLINE_MATH = re.compile(r"\$+([^$]+?)\$+|\\\((.+?)\\\)")
PARSE_RULES = ("boxed", "answer_line")


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` or ``\\fbox{...}``; None when there is none or it never closes."""
    position, opener = max((text.rfind(opener), opener) for opener in _BOX_OPENERS)
    if position < 0:
        return None
    start = position + len(opener)
    end = _closing_brace(text, start)
    return None if end is None else text[start:end]


def final_answer_line(text: str) -> str | None:
    """The answer a final "… answer is …" statement gives, or None when the text makes none."""
    ends = [match.end() for match in _ANSWER_IS.finditer(text)]
    if not ends:
        return None
    line = text[ends[-1] :].split("\n", 1)[0]
    inline = _INLINE_MATH.search(line)
    answer = (inline.group(1) or inline.group(2)) if inline else line.split(". ", 1)[0]
    return answer.strip().rstrip(".").strip() or None


def _closing_brace(text: str, start: int) -> int | None:
    """The index of the brace that closes the group opened just before ``start``."""
    depth = 1
    for index in range(start, len(text)):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
    return None


def normalize_math(answer: str) -> str:
    """The MATH normal form of a LaTeX answer."""
    text = answer.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    text = text.replace("tfrac", "frac").replace("dfrac", "frac")
    for removed in _REMOVED:
        text = text.replace(removed, "")
    head, units, rest = text.partition(_UNITS)
    if units and (_VALUE_END.search(head) or (rest.startswith(" ") and head.strip())):
        text = head
    text = text.replace("\\%", "")
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    if text.startswith("."):
        text = "0" + text
    left, equals, right = text.partition("=")
    if equals and "=" not in right and len(left) <= 2:
        text = right  # "x = 5" -> "5"
    text = text.replace(" ", "")
    text = _SQRT_ARGUMENT.sub(r"\\sqrt{\1}", text)
    text = _brace_frac_arguments(text)
    if text == "0.5":
        return "\\frac{1}{2}"
    return _slash_fraction(text)


def _brace_frac_arguments(text: str) -> str:
    """``\\frac12`` and ``\\frac1{2}`` -> ``\\frac{1}{2}``: an argument given without braces is braced."""
    pieces = text.split(_FRAC)
    for index, piece in enumerate(pieces[1:], start=1):
        arguments: list[str] = []
        rest = piece
        while rest and len(arguments) < 2:
            argument = _argument(rest)
            if argument is None:
                break
            arguments.append(argument if argument.startswith("{") else "{" + argument + "}")
            rest = rest[len(argument) :]
        pieces[index] = "".join(arguments) + rest
    return _FRAC.join(pieces)


def _argument(text: str) -> str | None:
    """The macro argument ``text`` starts with: a braced group, a macro or one character."""
    if text.startswith("{"):
        end = _closing_brace(text, 1)
        return None if end is None else text[: end + 1]
    macro = _MACRO.match(text)
    return macro.group() if macro else text[0]


def _slash_fraction(text: str) -> str:
    """``3/4`` -> ``\\frac{3}{4}``, only for a plain ratio of two integers."""
    numerator, slash, denominator = text.partition("/")
    if slash and _INTEGER.fullmatch(numerator) and denominator.isdigit():
        return f"\\frac{{{numerator}}}{{{denominator}}}"
    return text


class MathTask(Task):
    """MATH: boxed answers (or, with ``parse="answer_line"``, final answer lines), normalised, compared as strings."""

    family = "math"

    def __init__(self, parse: str = "boxed") -> None:
        if parse not in PARSE_RULES:
            raise CuratorError(f"task '{self.family}': parse must be one of {', '.join(PARSE_RULES)}, not {parse!r}")
        self.parse = parse
        self.name = self.family if parse == "boxed" else f"{self.family}:{parse}"

    def answer_text(self, text: str) -> str | None:
        """The answer as written (before normalising), where ``parse`` looks for it."""
        boxed = last_boxed(text)
        if boxed is None and self.parse == "answer_line":
            return final_answer_line(text)
        return boxed

    def extract(self, text: str) -> str | None:
        answer = self.answer_text(text)
        return None if answer is None else normalize_math(answer) or None

    def normalize_reference(self, text: str) -> str | None:
        answer = self.answer_text(text)
        return normalize_math(text if answer is None else answer) or None

    def equal_batch(self, a: pa.Array, b: pa.Array) -> pa.BooleanArray:
        return pc.fill_null(pc.equal(a, b), False)
