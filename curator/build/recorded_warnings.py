"""Warnings raised while a step scores a batch, recorded for that batch even when two batches score at once.

``warnings.catch_warnings`` swaps process-wide state on entry and exit, so
two threads using it at once lose or mix each other's warnings. Here the
process-wide part (every warning shown, and shown through :func:`_route`) is
installed once while any thread records, and each recording thread keeps
its own list; a warning from a thread that is not recording goes where it
would have gone.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_local = threading.local()
_lock = threading.Lock()
_installed: dict[str, Any] = {}
_users = 0


@contextmanager
def recorded_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """The warnings this thread raises inside the block, each one recorded (none shown)."""
    caught: list[warnings.WarningMessage] = []
    outer = getattr(_local, "caught", None)
    _install()
    _local.caught = caught
    try:
        yield caught
    finally:
        _local.caught = outer
        _uninstall()


def _route(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
           line: str | None = None) -> None:
    caught = getattr(_local, "caught", None)
    if caught is None:
        _installed["showwarning"](message, category, filename, lineno, file, line)
    else:
        caught.append(warnings.WarningMessage(message, category, filename, lineno, file, line))


def _install() -> None:
    """The first recording thread saves the process's warning state (as ``catch_warnings`` does) and routes."""
    global _users
    with _lock:
        if _users == 0:
            saved = warnings.catch_warnings()
            saved.__enter__()
            _installed.update(saved=saved, showwarning=warnings.showwarning)
            warnings.simplefilter("always")
            warnings.showwarning = _route
        _users += 1


def _uninstall() -> None:
    """The last one to finish puts the state back, whichever thread first saved it."""
    global _users
    with _lock:
        _users -= 1
        if _users == 0:
            _installed.pop("saved").__exit__(None, None, None)
