"""Progress bars on stderr: on a terminal by default, forced on or off on request."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextmanager
def progress_bar(total: int | None, label: str, *, enabled: bool | None = None, unit: str = "rows") -> Iterator[Any]:
    """A tqdm bar counting ``unit`` with a rate (rows/s), or a silent stand-in.

    ``enabled=None`` shows it when stderr is a terminal.
    """
    if not (sys.stderr.isatty() if enabled is None else enabled):
        yield _Silent()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit=f" {unit}", unit_scale=True, file=sys.stderr, dynamic_ncols=True) as bar:
        yield bar
