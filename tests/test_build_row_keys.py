"""Row keys: the content hashes that key the on-disk score cache.

They must be the same in every process, on every machine and under every
library version that can read the cache, and differ wherever the content
differs; the known answers below pin the function itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curator.build.row_keys import group_scope_keys, row_hashes, value_hashes


def _batch() -> pa.RecordBatch:
    return pa.record_batch({
        "id": ["q1", "q1", None],
        "rationale": ["A: 18", "", "x"],
        "sample": pa.array([0, 1, None], pa.int32()),
        "score": [0.5, None, -0.0],
    })


def _hex(hashes: np.ndarray) -> list[str]:
    return [f"{int(hi):016x}{int(lo):016x}" for hi, lo in hashes]


KNOWN = ["c72b194f10cf9505590a79ce1e24029c", "cdd1faddadc01d89d8317209c8482875", "74bbb7b8777622678ba95a376cc25d4f"]


def test_row_hashes_are_the_published_functions_values():
    # XXH3-128 and SplitMix64 are fixed functions: a change here orphans every cache on disk.
    assert _hex(row_hashes(_batch())) == KNOWN
    long = "Natalia sold clips to 48 friends"  # 16 bytes or more: XXH3-128 of the bytes, as published
    assert _hex(value_hashes(pa.array([long]))) == ["3fd2bbb449bf47581d7b34020e861cff"]


def test_row_hashes_are_the_same_in_another_process():
    code = ("import pyarrow as pa, sys; sys.path.insert(0, 'tests'); from test_build_row_keys import _batch, _hex; "
            "from curator.build.row_keys import row_hashes; print(' '.join(_hex(row_hashes(_batch()))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent, env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.split() == KNOWN


def test_a_row_hash_depends_on_its_content_alone():
    batch = _batch()
    table = pa.Table.from_batches([batch, batch]).slice(1, 4)  # other positions, a sliced chunk
    moved = row_hashes(table.combine_chunks().to_batches()[0])
    assert _hex(moved) == KNOWN[1:] + KNOWN[:2]
    chunked = pa.chunked_array([["q1"], ["q1", None]])
    assert (value_hashes(chunked) == value_hashes(batch.column("id"))).all()


@pytest.mark.parametrize(("a", "b"), [
    (["x", None], ["x", ""]),  # a null is not an empty string
    (["x", "null"], ["x", None]),
    (["ab", "c"], ["a", "bc"]),  # the split between columns counts
    (["c", "ab"], ["ab", "c"]),  # so does the column order
])
def test_different_rows_get_different_hashes(a, b):
    def row(values: list[str | None]) -> pa.RecordBatch:
        return pa.record_batch({f"c{i}": pa.array([v], pa.string()) for i, v in enumerate(values)})

    assert _hex(row_hashes(row(a))) != _hex(row_hashes(row(b)))


def test_values_of_every_kind_hash_and_equal_values_hash_equal():
    columns = [
        pa.array([1, 1, 2, None], pa.int64()),
        pa.array([1.5, 1.5, -0.0, None]),
        pa.array([True, True, False, None]),
        pa.array([10, 10, 20, None], pa.timestamp("us")),
        pa.array([[1], [1], [1, 2], None]),
        pa.array([{"a": 1}, {"a": 1}, {"a": 2}, None]),
        pa.array(["x", "x", "y", None]).dictionary_encode(),
        pa.array([b"x", b"x", b"y", None], pa.large_binary()),
    ]
    for column in columns:
        hashes = _hex(value_hashes(column))
        assert hashes[0] == hashes[1] and len(set(hashes[1:])) == 3, column.type


def test_short_values_never_collide_and_long_ones_hash_apart():
    values = [""] + [chr(97 + i % 26) * n for n in range(1, 40) for i in range(3)] + ["x" * 15, "x" * 14 + "\x0f"]
    values += ["\0" * n for n in range(1, 20)]  # zero bytes are not padding
    assert len(set(_hex(value_hashes(pa.array(values))))) == len(values)


def test_runs_of_repeated_values_hash_like_single_values():
    values = ["q1"] * 5 + ["q2"] + ["q1"] * 3 + [None, None, "q3"] + ["a longer repeated question"] * 3 + ["q3"]
    one_by_one = np.concatenate([value_hashes(pa.array([v], pa.string())) for v in values])
    assert (value_hashes(pa.array(values, pa.string())) == one_by_one).all()


def test_group_keys_follow_the_reaching_rows_and_their_places():
    hashes = row_hashes(pa.record_batch({"id": ["a", "a", "a", "b"], "text": ["1", "2", "3", "4"]}))
    groups = np.array([0, 0, 0, 1])
    keys = _hex(group_scope_keys(hashes, groups))
    assert len(set(keys)) == 4
    again = _hex(group_scope_keys(hashes[[0, 1, 2]], groups[[0, 1, 2]]))
    assert again == keys[:3]  # the same rows reaching: the same keys, whatever else is in the batch
    fewer = _hex(group_scope_keys(hashes[[0, 2]], groups[[0, 2]]))
    assert not set(fewer) & set(keys)  # another set of reaching rows: other keys
