"""What a filter's ``select`` returned, checked and made numpy: one keep flag (and weight) per row."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from curator.build.planning import PlannedStep
from curator.errors import CuratorError
from curator.filter import Selection


def check_selection(selection: Selection, n: int, planned: PlannedStep) -> tuple[np.ndarray, np.ndarray | None]:
    def as_numpy(values: Any, dtype: Any) -> np.ndarray:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if isinstance(values, pa.Array):
            values = values.fill_null(False if dtype is bool else np.nan).to_numpy(zero_copy_only=False)
        array = np.asarray(values, dtype=dtype)
        if array.shape != (n,):
            raise CuratorError(
                f"filter '{planned.step.filter}' ({planned.plugin}) selected {array.shape} values for {n} rows"
            )
        return array

    keep = as_numpy(selection.keep, bool)
    weight = None if selection.weight is None else as_numpy(selection.weight, np.float32)
    return keep, weight
