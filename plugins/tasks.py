"""The built-in tasks (answer parsers), registered like any third-party plugin.

Each task lives in an ``answers_*`` module; the rules are in METHODS.md §1.
"""

from __future__ import annotations

from curator import RegisterTask, hookimpl
from curator_plugins.answers_choice import MultipleChoiceTask, YesNoTask
from curator_plugins.answers_math import MathTask
from curator_plugins.answers_numeric import Gsm8kTask, NumericTask


@hookimpl
def register_tasks(register: RegisterTask) -> None:
    for task in (Gsm8kTask(), NumericTask(), MathTask(), MultipleChoiceTask(), YesNoTask()):
        register(task)
