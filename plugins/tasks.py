"""The built-in tasks (answer parsers), registered like any third-party plugin.

Each task lives in an ``answers_*`` module; the rules are in METHODS.md §1.
A task with an option is registered once per value, named ``NAME:VALUE``
(``math:answer_line``), so that ``task:`` in a recipe and ``--task`` pick it
by name and every cache keyed by the task's name keeps the variants apart.
``math_verify`` (which needs the optional math-verify package) registers from
its own module, ``answers_math_verify``.
"""

from __future__ import annotations

from curator import RegisterTask, hookimpl
from curator_plugins.answers_choice import MultipleChoiceTask, YesNoTask
from curator_plugins.answers_math import MathTask
from curator_plugins.answers_numeric import Gsm8kTask, NumericTask


@hookimpl
def register_tasks(register: RegisterTask) -> None:
    tasks = (Gsm8kTask(), NumericTask(), MathTask(), MathTask("answer_line"), MultipleChoiceTask(), YesNoTask())
    for task in tasks:
        register(task)
