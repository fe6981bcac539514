"""Running ``curator`` in the test's own process, for its exit code."""

from __future__ import annotations

from curator.cli import main


def exit_code(args: list[str]) -> int:
    """``curator ARGS`` run here: 0, or the code it exited with."""
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
