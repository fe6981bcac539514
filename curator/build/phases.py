"""Where a build's time goes, phase by phase: wall seconds of the build's own thread, CPU seconds of all.

Wall seconds are the build's own thread's: work overlapped in background
threads (reading the input, answering and hashing it, writing the working
copy and the outputs) counts there only where the build waits for it. CPU
seconds are those of every thread that worked on the phase, background ones
included. On a loaded machine the wall seconds of every phase stretch with
the load; the CPU seconds do not. The manifest records both; :data:`RESUME` names those spent on what makes a
build resumable and its scores reusable, so their share of the build can be
watched (``bench/bench_filters.py`` prints it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

RESUME = ("fingerprint", "working copy", "read copy", "plan", "cache", "gather")
"""Hashing the input; hashing the rows and writing the working copy; reading it back between passes;
looking rows up in the score cache; storing new scores in it; gathering every reached row's scores from it."""


class Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._lock = threading.Lock()
        self._open = threading.local()  # per thread, the blocks being timed, innermost last

    def add(self, name: str, seconds: float, cpu: float = 0.0) -> None:
        with self._lock:  # background threads add their CPU time too
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    @contextmanager
    def timing(self, name: str, *, wall: bool = True) -> Iterator[None]:
        """Time the block under ``name``; ``wall=False`` in a background thread, whose wall time overlaps.

        A block timed inside another in the same thread (the one pass pulls
        the working copy's batches while it waits for the steps) counts for
        its own phase only: the outer one is given the rest.
        """
        stack = self._open.__dict__.setdefault("stack", [])
        stack.append([0.0, 0.0])
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            spent, spent_cpu = time.perf_counter() - started, time.thread_time() - cpu
            inner_wall, inner_cpu = stack.pop()
            if stack:
                stack[-1][0] += spent
                stack[-1][1] += spent_cpu
            self.add(name, spent - inner_wall if wall else 0.0, spent_cpu - inner_cpu)

    def timed(self, name: str, items: Iterable[T]) -> Iterator[T]:
        """``items``, with the time spent waiting for each one counted under ``name``."""
        iterator = iter(items)
        while True:
            with self.timing(name):
                item = next(iterator, _END)
            if item is _END:
                return
            yield item  # type: ignore[misc]

    def report(self) -> dict[str, dict[str, float]]:
        """``{"wall": {phase: seconds of the build's thread}, "cpu": {phase: seconds of every thread}}``."""
        return {"wall": {name: round(s, 3) for name, s in self.seconds.items()},
                "cpu": {name: round(s, 3) for name, s in self.cpu.items()}}


_END = object()
