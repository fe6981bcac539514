"""Errors the command line turns into a one-line message and exit code 2."""

from __future__ import annotations


class CuratorError(Exception):
    """Bad input or bad configuration: the message names the file, row, column or plugin."""


class MissingDependency(CuratorError):
    """An optional dependency a plugin needs is not installed."""

    def __init__(self, package: str, needed_by: str, extra: str | None = None) -> None:
        """``extra``: an extra of rationale-curator (``lm``) or a whole requirement (``my-filter[gpu]``)."""
        if extra is None:
            hint = f"pip install {package}"
        else:
            hint = f"pip install '{extra if '[' in extra else f'rationale-curator[{extra}]'}'"
        super().__init__(f"{needed_by} needs the package '{package}' ({hint})")
