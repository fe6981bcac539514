"""Where a build's wall time goes, phase by phase, as the build's own thread spends it.

Work overlapped in a background thread (hashing and writing the working
copy, writing the outputs) counts only where the build waits for it. The
manifest records the phases; :data:`RESUME` names those spent on what makes a
build resumable and its scores reusable, so their share of the build can be
watched (``bench/bench_filters.py`` prints it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

RESUME = ("fingerprint", "working copy", "read copy", "plan", "cache", "gather")
"""Hashing the input; hashing and writing the working copy (beyond answering); reading it back between passes;
looking rows up in the score cache; storing new scores in it; gathering every reached row's scores from it."""


class Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def timing(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def timed(self, name: str, items: Iterable[T]) -> Iterator[T]:
        """``items``, with the time spent waiting for each one counted under ``name``."""
        iterator = iter(items)
        while True:
            started = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.add(name, time.perf_counter() - started)
                return
            self.add(name, time.perf_counter() - started)
            yield item

    def report(self) -> dict[str, float]:
        return {name: round(seconds, 3) for name, seconds in self.seconds.items()}
