"""rationale-curator: curate chain-of-thought rationales through pluggable filters.

``from curator import hookimpl`` is all a plugin needs from this module to
register itself; filters subclass :class:`curator.Filter`, tasks
:class:`curator.Task`. Nothing here imports torch, transformers or openai.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from curator.backend import Backend
from curator.errors import CuratorError, MissingDependency
from curator.filter import (
    TIE_KEY,
    Filter,
    FilterContext,
    ScoreColumns,
    Selection,
    check_percent,
    check_range,
    keep_at_cut,
    keep_by_threshold,
    percentile_cut,
    percentile_threshold,
    row_hashes,
    runtime_option,
    seeded_keys,
    select_option,
)
from curator.hookspecs import RegisterBackend, RegisterFilter, RegisterTask, hookimpl
from curator.task import Task

try:
    __version__ = version("rationale-curator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Backend",
    "CuratorError",
    "Filter",
    "FilterContext",
    "MissingDependency",
    "RegisterBackend",
    "RegisterFilter",
    "RegisterTask",
    "ScoreColumns",
    "Selection",
    "TIE_KEY",
    "Task",
    "__version__",
    "check_percent",
    "check_range",
    "hookimpl",
    "keep_at_cut",
    "keep_by_threshold",
    "percentile_cut",
    "percentile_threshold",
    "row_hashes",
    "runtime_option",
    "seeded_keys",
    "select_option",
]
