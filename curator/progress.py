"""Progress bars on stderr: on a terminal by default, forced on or off on request.

Every command draws its bars here, alike: whole counts (``12/40 q``), a
rate, and nothing at all when stderr is redirected unless ``--progress``
asks for it.

A filter that scores slowly (a model) can call :func:`report_rows` as it
finishes rows, so the build's bar moves within a batch instead of jumping
once per batch; outside a build the call does nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_row_reporter: ContextVar[Callable[[int], None] | None] = ContextVar("curator_row_reporter", default=None)


def report_rows(count: int) -> None:
    """Tell the running build that ``count`` more rows of the current batch are scored."""
    reporter = _row_reporter.get()
    if reporter is not None:
        reporter(count)


@contextmanager
def reporting_rows(reporter: Callable[[int], None]) -> Iterator[None]:
    """Route :func:`report_rows` calls made inside the block to ``reporter``."""
    token = _row_reporter.set(reporter)
    try:
        yield
    finally:
        _row_reporter.reset(token)


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextmanager
def progress_bar(
    total: int | None, label: str, *, enabled: bool | None = None, unit: str = "rows", initial: int = 0
) -> Iterator[Any]:
    """A tqdm bar counting whole ``unit`` with a rate (rows/s), or a silent stand-in.

    ``enabled=None`` shows it when stderr is a terminal; ``initial`` is work
    done before (a resumed run's).
    """
    if not (sys.stderr.isatty() if enabled is None else enabled):
        yield _Silent()
        return
    from tqdm import tqdm

    with tqdm(
        total=total, initial=initial, desc=label, unit=f" {unit}", file=sys.stderr, dynamic_ncols=True
    ) as bar:
        yield bar
