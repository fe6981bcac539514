"""Tasks: how a task's answers are extracted, normalised and compared.

A task turns free text into a canonical answer string, so that voting and
correctness work on plain string equality wherever the task allows it. A
plugin author writes :meth:`Task.extract` for one text; the engine calls the
batch methods, which a built-in task overrides with vectorised kernels.

Tasks are registered instances, looked up by ``name``. A task that takes an
option registers one instance per value, named ``NAME:VALUE`` (the built-in
``math:answer_line``): the recipe's ``task:`` and ``--task`` then name the
variant, and caches keyed by the task's name keep variants apart.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import pyarrow as pa


class Task(ABC):
    """An answer parser and normaliser, registered through ``register_tasks``."""

    name: str = ""

    @abstractmethod
    def extract(self, text: str) -> str | None:
        """The canonical answer a model's text ends with, or None when there is none."""

    def normalize_reference(self, text: str) -> str | None:
        """The canonical form of a gold answer (by default parsed like a prediction)."""
        return self.extract(text)

    def equal(self, a: str | None, b: str | None) -> bool:
        """Whether two canonical answers are the same; a missing answer equals nothing."""
        return a is not None and b is not None and a == b

    def extract_batch(self, texts: pa.Array) -> pa.StringArray:
        """:meth:`extract` over an Arrow string array; nulls stay null."""
        return pa.array([None if t is None else self.extract(t) for t in texts.to_pylist()], pa.string())

    def normalize_reference_batch(self, texts: pa.Array) -> pa.StringArray:
        """:meth:`normalize_reference` over an Arrow string array; nulls stay null."""
        return pa.array(
            [None if t is None else self.normalize_reference(t) for t in texts.to_pylist()], pa.string()
        )

    def equal_batch(self, a: pa.Array, b: pa.Array) -> pa.BooleanArray:
        """:meth:`equal` element-wise; never null."""
        return pa.array([self.equal(x, y) for x, y in zip(a.to_pylist(), b.to_pylist())], pa.bool_())
