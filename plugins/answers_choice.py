"""Closed-answer tasks: multiple choice (a letter) and yes/no.

Both read the answer after the last marker (see ``answers_markers``), as the
numeric tasks do. Without a marker, the text is either a bare answer (a gold
label, or a zero-shot stage-2 completion such as `` (B).``) or a rationale
that stopped early; the last candidate in it is the one the model concluded
with, so that is the one taken.

Multiple choice: after the marker, the first option letter that is in
parentheses (``(B)``, ``(b)``) or stands alone (``B``, ``B.``), never a
capital inside a word (``Because``): Fine-tune-CoT's parser read any capital
letter, so ``Because`` answered B. Without a marker, a standalone capital in
free text is too often a word (``A``, ``I``), so only a parenthesised letter,
or a text that is nothing but a letter, counts.
"""

from __future__ import annotations

import re

from curator import Task
from curator_plugins.answers_markers import after_last_marker


class MultipleChoiceTask(Task):
    """Option letters; the canonical answer is the upper-case letter."""

    name = "multiple_choice"
    # Seven options covers the supported sets (tracking shuffled objects has
    # seven) and leaves out "I", which is mostly the pronoun.
    letters = "ABCDEFG"

    def __init__(self) -> None:
        letter = f"[{self.letters}]"
        self._parenthesised = re.compile(rf"\(((?i:{letter}))\)")
        self._after_marker = re.compile(rf"\(((?i:{letter}))\)|(?<![A-Za-z0-9'’])({letter})(?![A-Za-z0-9'’])")
        self._bare = re.compile(rf"[ \t\r\n]*\(?((?i:{letter}))\)?[ \t\r\n]*[.:]?[ \t\r\n]*")

    def extract(self, text: str) -> str | None:
        tail = after_last_marker(text)
        if tail is not None:
            match = self._after_marker.search(tail)
            return None if match is None else (match.group(1) or match.group(2)).upper()
        bare = self._bare.fullmatch(text)
        if bare is not None:
            return bare.group(1).upper()
        found = self._parenthesised.findall(text)
        return found[-1].upper() if found else None


_YES_NO = re.compile(r"(?<![A-Za-z0-9])(yes|no)(?![A-Za-z0-9])", re.IGNORECASE)
_BOOLEANS = {"true": "yes", "false": "no"}


class YesNoTask(Task):
    """Yes/no questions; the canonical answer is ``yes`` or ``no``."""

    name = "yes_no"

    def extract(self, text: str) -> str | None:
        tail = after_last_marker(text)
        if tail is not None:
            match = _YES_NO.search(tail)
            return None if match is None else match.group(1).lower()
        found = _YES_NO.findall(text)
        return found[-1].lower() if found else None

    def normalize_reference(self, text: str) -> str | None:
        # StrategyQA's gold answers are booleans, which arrive as "True"/"False".
        return _BOOLEANS.get(text.strip().lower()) or self.extract(text)
