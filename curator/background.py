"""Work in one background thread, overlapped with the caller's: a producer of items, or a queue of calls.

A build reads and writes in such threads (Arrow's readers, writers and
kernels release the GIL, so on two cores a batch can be decoded or written
while the next is parsed or hashed); ``generate`` runs its event loop in one.
Each helper keeps order, holds at most ``depth`` entries in its queue (memory
stays a few batches), re-raises a failure in the calling thread, and stops
its thread when the caller is done or fails.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
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


class Worker:
    """Runs submitted calls one at a time and in order in a background thread, while the caller goes on.

    A failure is raised once, by the next :meth:`submit` or by :meth:`close`;
    the calls after it are skipped.
    """

    def __init__(self, name: str, depth: int = 2) -> None:
        self._calls: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._failed = False
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
                try:
                    entry[0](*entry[1])
                except BaseException as exc:  # raised in the caller's thread
                    self._error, self._failed = exc, True
