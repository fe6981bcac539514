"""Small filters and runners shared by the engine tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curator import (
    Filter,
    Selection,
    hookimpl,
    keep_by_threshold,
    percentile_threshold,
    runtime_option,
    select_option,
)
from curator.build import parse_recipe, run_build
from curator.plugins import registry_for

SCORE_CALLS: list[int] = []
CRASH_AFTER: list[int] = []
"""When set, ``rationale_length`` raises on the score call after this many."""


@dataclass(kw_only=True)
class RationaleLength(Filter):
    """Keeps the shortest ``keep_percent`` % of rationales; counts its score calls."""

    name = "rationale_length"
    columns = ("length",)
    scope = "row"
    score_meaning = {"length": "lower"}
    keep_percent: float = select_option(100.0)

    def score(self, batch, context):
        SCORE_CALLS.append(batch.num_rows)
        if CRASH_AFTER and len(SCORE_CALLS) > CRASH_AFTER[0]:
            raise RuntimeError("simulated crash")
        return {"length": pc.utf8_length(batch.column("rationale"))}

    def fit(self, scores):
        return {"cut": percentile_threshold(scores.numpy("length"), self.keep_percent, keep="lowest")}

    def select(self, batch, stats):
        values = batch.column("length").to_numpy().astype(float)
        return Selection(keep=keep_by_threshold(values, stats["cut"], keep="lowest"))


@dataclass(kw_only=True)
class HalfWeight(Filter):
    """Keeps every row and halves the weight of odd samples."""

    name = "half_weight"
    columns = ("odd",)
    scope = "row"

    def score(self, batch, context):
        return {"odd": pc.equal(pc.bit_wise_and(batch.column("sample"), 1), 1)}

    def select(self, batch, stats):
        odd = batch.column("odd").to_numpy(zero_copy_only=False)
        return Selection(keep=np.ones(len(odd), bool), weight=np.where(odd, 0.5, 1.0))


@dataclass(kw_only=True)
class SlowLength(RationaleLength):
    """``rationale_length`` that takes ``pause`` seconds per batch, to be killed mid-build."""

    name = "slow_length"
    pause: float = runtime_option(0.05)

    def score(self, batch, context):
        import time

        time.sleep(self.pause)
        return super().score(batch, context)


@dataclass(kw_only=True)
class ShortChanged(Filter):
    """Returns one value too few: the build must say so in one line, whichever executor ran it."""

    name = "short_changed"
    columns = ("x",)

    def score(self, batch, context):
        return {"x": pa.array([1] * (batch.num_rows - 1))}

    def select(self, batch, stats):
        return Selection(keep=np.ones(batch.num_rows, bool))


@dataclass(kw_only=True)
class NeedsMissingPackage(Filter):
    """Declares an optional package that is not installed."""

    name = "needs_missing"
    columns = ("x",)
    dependencies = ("curator_no_such_module",)
    extra = "curator-missing[gpu]"

    def score(self, batch, context):
        raise AssertionError("never scored: planning stops the build")

    def select(self, batch, stats):
        return Selection(keep=np.ones(batch.num_rows, bool))


class TestPlugin:
    @staticmethod
    @hookimpl
    def register_filters(register):
        for cls in (RationaleLength, HalfWeight, FileBonus, Grumpy, DeviceProbe, SlowLength, ShortChanged,
                    NeedsMissingPackage):
            register(cls)


def engine_registry():
    """Installed plugins plus the test filters above."""
    return registry_for([TestPlugin], entry_points_too=True)


def build(tmp: Path, input_path: Path, filters: list[Any], *, name: str = "out", **extra: Any):
    recipe = parse_recipe(
        {"input": str(input_path), "task": "gsm8k", "filters": filters, "output": str(tmp / name), **extra},
        base_dir=tmp,
    )
    return run_build(recipe, registry=engine_registry(), progress=False)


def read_split(out: Path) -> tuple[pa.Table, pa.Table, dict]:
    return (
        pq.read_table(out / "curated.parquet"),
        pq.read_table(out / "rejected.parquet"),
        json.loads((out / "manifest.json").read_text()),
    )


@dataclass(kw_only=True)
class FileBonus(Filter):
    """Scores every row with the number written in the file ``bonus``."""

    name = "file_bonus"
    columns = ("bonus",)
    bonus: str = "bonus.txt"

    def score(self, batch, context):
        SCORE_CALLS.append(batch.num_rows)
        value = float(context.resolve(self.bonus).read_text())
        return {"bonus": pa.array([value] * batch.num_rows)}

    def select(self, batch, stats):
        return Selection(keep=np.ones(batch.num_rows, bool))


@dataclass(kw_only=True)
class Grumpy(Filter):
    """Keeps everything and warns once per scored batch."""

    name = "grumpy"
    columns = ("seen",)

    def score(self, batch, context):
        import warnings

        warnings.warn(f"{batch.num_rows} rows looked odd", stacklevel=2)
        return {"seen": pa.array([True] * batch.num_rows)}

    def select(self, batch, stats):
        return Selection(keep=np.ones(batch.num_rows, bool))


@dataclass(kw_only=True)
class DeviceProbe(Filter):
    """Records the device the build asked model-backed filters to use."""

    name = "device_probe"
    columns = ("device",)

    def score(self, batch, context):
        return {"device": pa.array([context.device] * batch.num_rows, pa.string())}

    def select(self, batch, stats):
        return Selection(keep=np.ones(batch.num_rows, bool))
