"""The filter contract: ``score`` a batch of whole groups, then ``select`` rows.

A filter is a dataclass whose fields are its recipe options. The engine does
everything around it: batching by whole groups, caching scores on disk,
computing statistics over the rows that reach it, counting, timing, and
writing rejected rows with the step that dropped them. A filter only decides.

Options that change only which rows are kept (a threshold, a percentile) are
declared with :func:`select_option`, and options that change only how
scoring runs (a batch size) with :func:`runtime_option`; both are left out of
the score cache key, so changing them re-scores nothing. An option naming a
local file or folder (a model, a validation set) keys the cache by that
path's size and modification time too, so editing it re-scores.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import pyarrow as pa

from curator.errors import CuratorError
from curator.task import Task


def select_option(default: Any) -> Any:
    """A dataclass field that affects selection only, not the scores."""
    return dataclasses.field(default=default, metadata={"select": True})


def runtime_option(default: Any) -> Any:
    """A dataclass field that changes how scoring runs (a batch size), not the scores."""
    return dataclasses.field(default=default, metadata={"runtime": True})


ScoreMeaning = Literal["higher", "lower", "boolean", "categorical"]
SCORE_MEANINGS: tuple[str, ...] = typing.get_args(ScoreMeaning)


@dataclass
class Selection:
    """Which rows of a batch to keep, and optionally a per-row training weight."""

    keep: Any
    weight: Any = None


class ScoreColumns(Protocol):
    """Read access to a filter's score columns over all rows that reached it."""

    @property
    def num_rows(self) -> int: ...

    def column(self, name: str) -> pa.ChunkedArray: ...

    def numpy(self, name: str) -> np.ndarray: ...


class Models(Protocol):
    """Loaded models shared by the filters of one build, keyed by what loads them."""

    def get(self, key: tuple[Any, ...], load: Any) -> Any: ...

    def clear(self) -> None: ...


@dataclass
class FilterContext:
    """What a filter may use while scoring."""

    task: Task
    base_dir: Path
    models: Models
    device: str | None = None

    def resolve(self, path: str | Path) -> Path:
        """A path from the recipe, relative to the recipe's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


@dataclass(kw_only=True)
class Filter(ABC):
    """Base class of every filter, built-in or third-party.

    Subclasses set ``name`` (the recipe name), ``columns`` (the score columns
    :meth:`score` returns; a name starting with ``_`` is kept for
    :meth:`select` but not written out) and ``requires`` (input columns
    :meth:`score` needs, checked before anything runs). The other class
    attributes below are declarations with safe defaults.
    """

    name: ClassVar[str] = ""
    columns: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[tuple[str, ...]] = ()
    scope: ClassVar[Literal["row", "group"]] = "group"
    """What one row's scores depend on, which decides when the cache may reuse them.

    ``"row"``: the row's own input columns only; its scores are reused wherever
    the same row reaches the step. ``"group"`` (the default, always correct):
    the rows of its group that reach the step, in order; its scores are reused
    only where exactly those rows reach it again.
    """
    score_meaning: ClassVar[Mapping[str, ScoreMeaning]] = {}
    """What each public score column means, for reports: ``"higher"`` or ``"lower"``
    (the end :meth:`select` keeps, or weights up), ``"boolean"`` (True is kept) or
    ``"categorical"`` (labels, no order). The build writes it into the manifest
    per step; a column left out has no declared meaning, null there.
    """
    dependencies: ClassVar[tuple[str, ...]] = ()
    """Modules :meth:`score` imports beyond the core's, checked when the recipe is planned."""
    extra: ClassVar[str | None] = None
    """What installs :attr:`dependencies`, named in the error: an extra of
    rationale-curator (``"lm"``) or a requirement (``"my-filter[gpu]"``)."""
    uses_model: ClassVar[bool] = False
    """:meth:`score` runs a model: the Ray executor gives each of its workers a GPU when the cluster has them."""

    @abstractmethod
    def score(self, batch: pa.RecordBatch, context: FilterContext) -> Mapping[str, Any]:
        """Score columns for a batch of whole groups, one value per row, in row order."""

    def fit(self, scores: ScoreColumns) -> dict[str, Any]:
        """Statistics over all rows that reached this filter (thresholds, percentiles).

        The result goes to :meth:`select` and to the manifest.
        """
        return {}

    @abstractmethod
    def select(self, batch: pa.RecordBatch, stats: Mapping[str, Any]) -> Selection:
        """Keep (and weight) the rows of a batch holding input and score columns."""

    def describe(self) -> dict[str, Any]:
        """Facts learnt while scoring that belong in the manifest (e.g. a validation loss)."""
        return {}

    def close(self) -> None:
        """Release what scoring held (models, files)."""

    # -- configuration ------------------------------------------------------

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, step: str) -> Filter:
        """Build from recipe options, with an error naming the step and option."""
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            known = ", ".join(sorted(fields)) or "none"
            raise CuratorError(f"filter step '{step}': unknown option '{unknown[0]}' (options: {known})")
        hints = typing.get_type_hints(cls)
        values = {k: _coerce(v, hints.get(k, Any), step, k) for k, v in options.items()}
        try:
            instance = cls(**values)
        except TypeError as exc:
            raise CuratorError(f"filter step '{step}': {exc}") from None
        instance.validate(step)
        return instance

    def validate(self, step: str) -> None:
        """Reject option values that are out of range; raise CuratorError naming ``step``."""

    def options(self) -> dict[str, Any]:
        """All option values, for the manifest."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def score_options(self) -> dict[str, Any]:
        """The options that change the scores: the score cache key."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.init and not (f.metadata.get("select") or f.metadata.get("runtime"))
        }


def _coerce(value: Any, hint: Any, step: str, option: str) -> Any:
    """Check a YAML value against a field's annotation; ints are accepted for floats."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for kind in allowed:
        if _matches(value, kind):
            return float(value) if kind is float else value
    wanted = " or ".join(_describe(kind) for kind in allowed)
    raise CuratorError(f"filter step '{step}': option '{option}' must be {wanted}, got {value!r}")


def _matches(value: Any, kind: Any) -> bool:
    if kind is Any:
        return True
    if kind is type(None):
        return value is None
    if typing.get_origin(kind) is typing.Literal:
        return value in typing.get_args(kind)
    kind = typing.get_origin(kind) or kind
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(kind))
    if kind is type(None):
        return "empty"
    return getattr(typing.get_origin(kind) or kind, "__name__", str(kind))


# -- helpers for select ------------------------------------------------------


def percentile_threshold(values: np.ndarray, keep_percent: float, *, keep: str) -> float | None:
    """The cut that keeps ``keep_percent`` % of the finite values, pooled.

    ``keep='lowest'`` keeps values at or under the cut, ``'highest'`` at or
    over it. The cut is the value at rank ``ceil(n * k / 100)``, clamped so
    that ``k = 100`` keeps every finite value; ``k = 0`` or no finite value
    gives None (keep nothing). Ties at the cut are all kept.
    """
    finite = values[np.isfinite(values)]
    count = math.ceil(finite.size * keep_percent / 100.0)
    if count <= 0 or finite.size == 0:
        return None
    index = min(count, finite.size) - 1
    if keep == "lowest":
        return float(np.partition(finite, index)[index])
    if keep == "highest":
        return float(-np.partition(-finite, index)[index])
    raise ValueError(f"keep must be 'lowest' or 'highest', not {keep!r}")


def keep_by_threshold(values: np.ndarray, cut: float | None, *, keep: str) -> np.ndarray:
    """Rows at or under (``lowest``) or at or over (``highest``) a cut; NaN never kept."""
    if cut is None:
        return np.zeros(values.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return values <= cut if keep == "lowest" else values >= cut


def check_percent(value: float | None, step: str, option: str = "keep_percent") -> None:
    """Reject a percentage outside [0, 100]."""
    if value is not None and not 0 <= value <= 100:
        raise CuratorError(f"filter step '{step}': option '{option}' must be between 0 and 100, got {value}")
