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
import hashlib
import math
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    """:meth:`score` runs a model: the Ray executor gives each of its workers a GPU when the cluster has them,
    and the local executor scores one batch at a time. :meth:`select`, and :meth:`score` of a filter that
    runs no model, may be called on two batches at once from two threads: keep nothing of one call on
    ``self`` for the next."""

    @abstractmethod
    def score(self, batch: pa.RecordBatch, context: FilterContext) -> Mapping[str, Any]:
        """Score columns for a batch of whole groups, one value per row, in row order."""

    def fit(self, scores: ScoreColumns) -> dict[str, Any]:
        """Statistics over all rows that reached this filter (thresholds, percentiles).

        The result goes to :meth:`select` and to the manifest. It depends on
        the scores and the options only. A local build of filters that run no
        model first calls it with scores that stop it at the first read: a fit
        that reads none returns its statistics, and a build whose fits all do
        selects while it scores, in one pass (see :mod:`curator.build.one_pass`).
        """
        return {}

    @abstractmethod
    def select(self, batch: pa.RecordBatch, stats: Mapping[str, Any]) -> Selection:
        """Keep (and weight) the rows of a batch holding input and score columns."""

    def reads(self, batch: pa.RecordBatch) -> Collection[str] | None:
        """The input columns :meth:`score` and :meth:`select` read from this batch; None (the default): all.

        Only these (of those the batch has) and ``requires`` are handed to
        them. A step after the first is given a copy of the rows that reach
        it, and a rationale it never reads need not be copied: on 1M rows
        of three model-free steps, that was 6 % of a build's time.
        """
        return None

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

TIE_KEY = "_tie"
"""The hidden score column of a percentile filter: each row's content hash (:func:`row_hashes`)."""

CutRule = Literal["exact", "iwsi_strict", "iwsi_inclusive"]
CUT_RULES: dict[str, str] = {
    "exact": "exactly floor(N*k/100) rows; rows tied at the cut are chosen by a seeded hash of (id, sample)",
    "iwsi_strict": "IWSI's released cut: strictly better than the value at sorted index int(N*k/100); ties there dropped",
    "iwsi_inclusive": "IWSI's released cut: at least as good as the value at sorted index int(N*k/100); ties there kept",
}
_TIE_SEPARATOR = "\x1f"
_MASK64 = 0xFFFFFFFFFFFFFFFF


def columns_read(filter: Filter, batch: pa.RecordBatch) -> list[str] | None:
    """The columns of ``batch`` that ``filter`` is handed (:meth:`Filter.reads` and ``requires``, in the batch's
    order); None where it reads them all."""
    declared = filter.reads(batch)
    if declared is None:
        return None
    wanted = {*declared, *filter.requires}
    return [name for name in batch.schema.names if name in wanted]


def handed(filter: Filter, batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with only the columns ``filter`` is handed (:func:`columns_read`): a view of it, not a copy."""
    columns = columns_read(filter, batch)
    return batch if columns is None else batch.select(columns)


@contextmanager
def undeclared_columns_named(filter: Filter, batch: pa.RecordBatch, call: str) -> Iterator[None]:
    """Turn the ``KeyError`` of a column that ``call`` read but :meth:`Filter.reads` left out into one clear line."""
    try:
        yield
    except KeyError as exc:
        said = str(exc.args[0]) if exc.args else ""
        if "does not exist in schema" not in said or filter.reads(batch) is None:
            raise
        raise CuratorError(f"{call}: {said}; name the column in its reads() (it was handed: "
                           f"{', '.join(batch.schema.names)})") from None


def content_hashes(columns: Sequence[pa.Array | pa.ChunkedArray]) -> np.ndarray:
    """A stable 64-bit hash (BLAKE2b) of each row's values in ``columns``, as uint64; nulls hash as empty."""
    parts = [pc.fill_null(pc.cast(column, pa.string()), "") for column in columns]
    joined = pc.binary_join_element_wise(*parts, _TIE_SEPARATOR) if len(parts) > 1 else parts[0]
    values = joined.cast(pa.binary()).to_pylist()
    digests = b"".join(hashlib.blake2b(value, digest_size=8, person=b"curator-tie").digest() for value in values)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def question_hashes(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """:func:`content_hashes` of each row's id, hashing each distinct id once."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    encoded = pc.dictionary_encode(ids)
    unique = content_hashes([encoded.dictionary])
    return unique[encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)] if len(unique) else unique


def row_hashes(batch: pa.RecordBatch, question: np.ndarray | None = None) -> pa.UInt64Array:
    """Each row's content hash: its ``id`` and ``sample`` (its identity), or ``id`` and ``rationale`` without a sample.

    A percentile filter returns it as its :data:`TIE_KEY` score column, so
    that :meth:`Filter.fit`, which sees only score columns, and
    :meth:`Filter.select`, which sees one batch, read the same tie-break key
    for a row whatever the batching. It depends on the row's content alone,
    never on its position, so a cached score stays valid under any upstream
    selection. Rows with the same id and sample share a key. Only ids and
    sample-less rows are hashed in Python; the rest is vectorised.
    """
    if question is None:  # the caller may have them already (:func:`question_hashes` of the batch's ids)
        question = question_hashes(batch.column("id"))
    names = batch.schema.names
    sample = batch.column("sample") if "sample" in names else pa.nulls(batch.num_rows, pa.int64())
    has_sample = sample.is_valid().to_numpy(zero_copy_only=False)
    part = _splitmix64(pc.fill_null(sample, 0).cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.uint64))
    missing = np.flatnonzero(~has_sample)
    if missing.size:
        texts = pc.take(batch.column("rationale"), pa.array(missing))
        part[missing] = content_hashes([texts])
    return pa.array(_splitmix64(question ^ part), pa.uint64())


def seeded_keys(hashes: np.ndarray | pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """Tie-break keys: content hashes mixed with ``seed`` by SplitMix64's finaliser.

    Each seed orders tied rows differently, and the same seed the same way
    on every run and every batching.
    """
    if isinstance(hashes, pa.ChunkedArray):
        hashes = hashes.combine_chunks()
    if isinstance(hashes, pa.Array):
        hashes = hashes.to_numpy(zero_copy_only=False)
    salt = np.uint64(_splitmix64(np.array([seed & _MASK64], dtype=np.uint64))[0])
    return _splitmix64(np.asarray(hashes, dtype=np.uint64) ^ salt)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def kept_count(rows: int, keep_percent: float) -> int:
    """``floor(rows * keep_percent / 100)``, computed on the decimal the user wrote (79 %, 33.3 %)."""
    return int(Decimal(repr(float(keep_percent))) * rows // 100)


def percentile_cut(
    values: np.ndarray,
    keep_percent: float,
    *,
    keep: str,
    rule: CutRule = "exact",
    tie_keys: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit the cut that keeps ``keep_percent`` % of the finite ``values``, pooled; for :func:`keep_at_cut`.

    ``keep='lowest'`` keeps the smallest values, ``'highest'`` the largest.
    With N finite values (NaN is never kept nor counted) and K =
    ``floor(N * k / 100)``:

    - ``exact`` (the project's rule) keeps exactly K rows. Rows tied at the
      cut are ordered by ``tie_keys`` (:func:`seeded_keys`), and the result
      holds both the cut value and the last tied key kept, so
      :func:`keep_at_cut` reproduces the choice batch by batch. The floor,
      not the ceiling, because ``keep_percent: 80`` should never keep more
      than 80 %, and because it is the count IWSI's released code keeps.
    - ``iwsi_strict`` (IWSI's DS-weight cut) keeps the values strictly
      better than the one at index K of the sorted values: at most K rows,
      ties at the cut all dropped.
    - ``iwsi_inclusive`` (IWSI's reward-model and self-evaluation cut) keeps
      the values at least as good as the one at index K: at least K + 1 rows
      (all of them at ``k = 100``), ties all kept.

    ``k = 100`` keeps every finite value under every rule. The result is the
    step's manifest entry too: ``rows`` (N), ``kept``, ``tied_at_cut`` (rows
    whose value equals the cut) and ``tied_kept``. Without ``tie_keys`` the
    counts are still right, but :func:`keep_at_cut` cannot choose the tied rows.
    """
    if keep not in ("lowest", "highest"):
        raise ValueError(f"keep must be 'lowest' or 'highest', not {keep!r}")
    if rule not in CUT_RULES:
        raise ValueError(f"rule must be one of {', '.join(CUT_RULES)}, not {rule!r}")
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    oriented = values[finite] if keep == "lowest" else -values[finite]
    n = oriented.size
    target = kept_count(n, keep_percent)
    stats: dict[str, Any] = {"rule": rule, "rule_text": CUT_RULES[rule], "keep": keep, "rows": n,
                             "cut": None, "at_cut": "all", "tie_key": None}
    if n == 0 or (target == 0 and rule == "exact"):
        return {**stats, "kept": 0, "tied_at_cut": 0, "tied_kept": 0}
    if target >= n:
        index, at_cut = n - 1, "all"
    elif rule == "exact":
        index, at_cut = target - 1, "by_key"
    else:
        index, at_cut = target, "none" if rule == "iwsi_strict" else "all"
    cut = float(np.partition(oriented, index)[index])
    better = int((oriented < cut).sum())
    tied = oriented == cut
    tied_count = int(tied.sum())
    tied_kept = {"all": tied_count, "none": 0}.get(at_cut, target - better)
    if at_cut == "by_key" and tied_kept == tied_count:
        at_cut = "all"
    if at_cut == "by_key" and tie_keys is not None:
        keys = np.asarray(tie_keys, dtype=np.uint64)[finite][tied]
        stats["tie_key"] = int(np.partition(keys, tied_kept - 1)[tied_kept - 1])
    stats.update(cut=cut if keep == "lowest" else -cut, at_cut=at_cut, kept=better + tied_kept,
                 tied_at_cut=tied_count, tied_kept=tied_kept)
    return stats


def keep_at_cut(values: np.ndarray, stats: Mapping[str, Any], tie_keys: np.ndarray | None = None) -> np.ndarray:
    """The rows of a batch that :func:`percentile_cut`'s ``stats`` keep; NaN never kept.

    Vectorised and per batch: a row's fate depends on its own value and tie
    key only, so any batching keeps the same rows.
    """
    values = np.asarray(values, dtype=np.float64)
    cut = stats["cut"]
    if cut is None:
        return np.zeros(values.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        better = values < cut if stats["keep"] == "lowest" else values > cut
        at = values == cut
    if stats["at_cut"] == "all":
        return better | at
    if stats["at_cut"] == "none":
        return better
    if tie_keys is None:
        raise ValueError("this cut breaks ties by key: pass the rows' tie_keys")
    return better | (at & (np.asarray(tie_keys, dtype=np.uint64) <= np.uint64(stats["tie_key"])))


def percentile_threshold(values: np.ndarray, keep_percent: float, *, keep: str) -> float | None:
    """The tie-inclusive cut that keeps at least ``keep_percent`` % of the finite values, pooled.

    ``keep='lowest'`` keeps values at or under the cut, ``'highest'`` at or
    over it. The cut is the value at rank ``ceil(n * k / 100)``, clamped so
    that ``k = 100`` keeps every finite value; ``k = 0`` or no finite value
    gives None (keep nothing). Ties at the cut are all kept, so coarse scores
    can keep far more than k %; the built-in filters use
    :func:`percentile_cut`, which keeps exactly ``floor(n * k / 100)`` rows.
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


def check_range(value: float | None, low: float, high: float, step: str, option: str) -> None:
    """Reject a value outside [low, high] (NaN included), naming the step and option."""
    if value is not None and not low <= value <= high:
        raise CuratorError(f"filter step '{step}': option '{option}' must be between {low:g} and {high:g}, got {value}")


def check_percent(value: float | None, step: str, option: str = "keep_percent") -> None:
    """Reject a percentage outside [0, 100]."""
    check_range(value, 0, 100, step, option)
