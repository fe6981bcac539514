"""Work in background threads, overlapped with the caller's: a producer of items, a queue of calls, a map.

A build reads and writes in such threads (Arrow's readers, writers and
kernels release the GIL, so on two cores a batch can be decoded or written
while the next is parsed or hashed); ``generate`` runs its event loop in one.
Each helper keeps order, holds at most ``depth`` entries in its queue (memory
stays a few batches), re-raises a failure in the calling thread, and stops
its threads when the caller is done or fails.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_POLL = 0.1  # seconds between checks, by a blocked thread, that the other side still wants it


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items`` in order, produced by a background thread up to ``depth`` ahead of the caller."""
    return handed_over(lambda put: all(put(item) for item in items), depth=depth, name="curator-prefetch")


def handed_over(produce: Callable[[Callable[[T], bool]], Any], *, depth: int, name: str) -> Iterator[T]:
    """What ``produce`` hands to ``put`` in a background thread, in order, as the caller asks for it.

    ``put`` returns False once the caller has stopped (finished early or
    failed): ``produce`` should then return. A failure in ``produce`` is
    raised in the caller's thread.
    """
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            produce(lambda item: put(("item", item)))
            put(("end", None))
        except BaseException as exc:  # handed to the caller, which re-raises it
            put(("error", exc))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def usable_cpus() -> int:
    """The CPUs this process may run on (at most 8: more threads than that only contend for the GIL)."""
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def shared_workers(pools: int) -> int:
    """Workers for each of ``pools`` :func:`mapped` pools that run at once, one stage after another of a pipeline.

    The CPUs are shared out, at least one each. More would not run more at once, only hold more batches
    in memory: on two cores, two pools of two workers took 10-15 % more CPU than two of one (most of it
    the kernel's, giving out fresh pages), and no less time.
    """
    return max(1, usable_cpus() // pools)


def mapped(call: Callable[[T], R], items: Iterable[T], *, workers: int | None = None) -> Iterator[R]:
    """``call(item)`` for each item, in order, computed by ``workers`` threads a few items ahead of the caller.

    Worth it where ``call`` spends most of its time in code that releases the
    GIL (Arrow and numpy kernels): on two cores two batches are then worked
    on at once. ``workers`` defaults to :func:`usable_cpus`. At
    most ``workers + 1`` items are taken ahead of the caller (memory stays a
    few batches; one is queued for the first worker to free); a failure is
    raised in the caller's thread when its item's turn comes, and the items
    not yet started are dropped.
    """
    count = workers or usable_cpus()
    waiting: deque[Future[R]] = deque()
    with ThreadPoolExecutor(count, thread_name_prefix="curator-map") as pool:
        try:
            for item in items:
                if len(waiting) > count:
                    yield waiting.popleft().result()
                waiting.append(pool.submit(call, item))
            while waiting:
                yield waiting.popleft().result()
        finally:
            for future in waiting:
                future.cancel()


class Worker:
    """Runs submitted calls one at a time and in order in a background thread, while the caller goes on.

    A failure is raised once, by the next :meth:`submit` or by :meth:`close`;
    the calls after it are skipped. :attr:`cpu` is the CPU time the calls took.
    """

    def __init__(self, name: str, depth: int = 2) -> None:
        self._calls: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._failed = False
        self.cpu = 0.0
        self._thread = threading.Thread(target=self._run, name=f"curator-{name}", daemon=True)
        self._thread.start()

    def submit(self, call: Callable[..., Any], *args: Any) -> None:
        self._raise()
        while self._thread.is_alive():
            try:
                self._calls.put((call, args), timeout=_POLL)
                return
            except queue.Full:
                continue
        self._raise()

    def close(self) -> None:
        """Wait for every submitted call; raise the first failure. Safe to call twice."""
        if self._thread.is_alive():
            self._calls.put(None)
            self._thread.join()
        self._raise()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        """Wait for the calls; after a failure in the caller, stop without raising the worker's own."""
        if kind is None:
            self.close()
            return
        self._failed = True  # skip what is still queued
        with contextlib.suppress(BaseException):  # the caller's failure is the one to report
            self.close()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while (entry := self._calls.get()) is not None:
            if not self._failed:
                started = time.thread_time()
                try:
                    entry[0](*entry[1])
                except BaseException as exc:  # raised in the caller's thread
                    self._error, self._failed = exc, True
                self.cpu += time.thread_time() - started


@contextlib.contextmanager
def imported_meanwhile(module: str) -> Iterator[None]:
    """Import ``module``, where installed, in a background thread while the block runs; joined when it ends.

    For a module that the block's work will import anyway, from some thread, at a moment when others would
    wait for it; a failed import is left for that moment to raise.
    """

    def run() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module(module)

    thread = threading.Thread(target=run, name=f"curator-import-{module}")
    thread.start()
    try:
        yield
    finally:
        thread.join()
