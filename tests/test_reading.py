"""Reading inputs: JSONL right past its first block, in batches of ``batch_rows`` and bounded memory; Parquet's encodings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_build import build, read_split

from curator import CuratorError, jsonl
from curator.io import Source

ROW = {"id": "q", "question": "What is 2 plus 3?", "rationale": "2 + 3 = 5. The answer is 5.", "sample": 0}


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows(n: int, **late: object) -> list[dict]:
    """``n`` rows of 4-candidate groups; the keys of ``late`` appear (with those values) only in the last row."""
    out = [{**ROW, "id": f"q{i // 4}", "sample": i % 4} for i in range(n)]
    out[-1].update(late)
    return out


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few hundred bytes, so that a file of a few hundred rows spans dozens of them."""
    monkeypatch.setattr(jsonl, "READ_SIZE", 512)
    monkeypatch.setattr(jsonl, "SCHEMA_BLOCK", 1024)


def test_a_file_over_16_mib_whose_last_row_brings_a_new_column(tmp_path):
    """The issue's case at its size: pyarrow's streaming reader refused it ("unexpected field")."""
    line = json.dumps(ROW).encode() + b"\n"
    count = (17 << 20) // len(line)
    path = tmp_path / "big.jsonl"
    path.write_bytes(line * count + json.dumps({**ROW, "sample": 1, "note": "late"}).encode() + b"\n")
    seen = 0
    notes = []
    for batch in Source.open(path).checked_batches(batch_rows=50_000):
        assert batch.schema.field("note").type == pa.string()
        notes += [n for n in batch.column("note").to_pylist() if n is not None]
        seen += batch.num_rows
    assert seen == count + 1 and notes == ["late"]


@pytest.mark.parametrize(
    ("late", "column", "kind"),
    [
        ({"extra": "new"}, "extra", pa.string()),  # a column first seen in the last block
        ({"logprob": -1.5}, "logprob", pa.float64()),  # ints in every earlier block, a float at the end
        ({"reference": "5"}, "reference", pa.string()),  # null everywhere before
        ({"when": "not a date"}, "when", pa.string()),  # read as timestamps until this line
    ],
)
def test_columns_that_widen_after_the_first_block_read_as_the_wider_type(tmp_path, small_blocks, late, column, kind):
    data = rows(300)
    for row in data[:-1]:
        row.update({"logprob": -1, "reference": None, "when": "2024-01-01"} if column != "extra" else {})
    path = write_rows(tmp_path / "c.jsonl", data[:-1] + [{**data[-1], **late}])
    table = Source.open(path).read_table()
    assert table.num_rows == 300
    assert table.schema.field(column).type == kind
    assert table.column(column)[-1].as_py() == late[column]


def test_a_widening_file_builds_like_the_same_rows_in_one_block(tmp_path, monkeypatch):
    data = rows(400, extra="late", logprob=-0.5)
    for row in data[:-1]:
        row["logprob"] = -1
    path = write_rows(tmp_path / "c.jsonl", data)
    whole = read_split(build(tmp_path, path, ["majority_vote"], name="whole").output_dir)
    monkeypatch.setattr(jsonl, "READ_SIZE", 512)
    monkeypatch.setattr(jsonl, "SCHEMA_BLOCK", 1024)
    split = read_split(build(tmp_path, path, ["majority_vote"], name="split", cache=str(tmp_path / "c2")).output_dir)
    assert split[0].equals(whole[0]) and split[1].equals(whole[1])


def test_a_row_that_does_not_fit_is_named_by_its_line(tmp_path, small_blocks):
    data = rows(300)
    for row in data[:200]:
        row["reference"] = 5
    for row in data[200:]:
        row["reference"] = "five"  # text where 200 lines, many blocks back, held numbers
    path = write_rows(tmp_path / "c.jsonl", data)
    with pytest.raises(CuratorError, match=r"c\.jsonl:201: column 'reference' is str here but float on earlier lines"):
        Source.open(path).read_table()


def test_batch_rows_is_honoured(tmp_path):
    path = write_rows(tmp_path / "c.jsonl", rows(1000))
    sizes = [b.num_rows for b in Source.open(path).iter_batches(batch_rows=64)]
    assert sum(sizes) == 1000 and max(sizes) == 64 and len(sizes) == 16


def test_errors_name_the_line_of_the_file_past_blank_lines(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join([json.dumps(ROW), "", "", json.dumps({**ROW, "sample": 1, "rationale": None}), ""]))
    with pytest.raises(CuratorError, match=r"c\.jsonl:4: column 'rationale' is null"):
        Source.open(path).read_table()


def test_invalid_utf8_is_named_by_its_line_in_a_later_block(tmp_path, small_blocks):
    path = tmp_path / "c.jsonl"
    path.write_bytes("".join(json.dumps(r) + "\n" for r in rows(100)).encode()
                     + b'{"id": "z", "question": "caf\xe9", "rationale": "r"}\n')
    with pytest.raises(CuratorError, match=r"c\.jsonl:101: not UTF-8 text \(byte 29 of the line is 0xe9\)"):
        Source.open(path).read_table()


PEAK = """
import sys
from curator.io import Source
for batch in Source.open(sys.argv[1]).iter_batches(16384):
    pass
print([line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1])
"""


def write_many(path: Path, n: int) -> Path:
    """``n`` rows, fast: one formatted line per row, written in slabs."""
    template = b'{"id": "q%d", "question": "What is %d plus %d? Say each step.", "rationale": "%d + %d = %d.", "sample": %d}\n'
    with open(path, "wb") as handle:
        for lo in range(0, n, 20_000):
            handle.write(b"".join(template % (i // 4, i, i % 7, i, i % 7, i + i % 7, i % 4)
                                  for i in range(lo, min(n, lo + 20_000))))
    return path


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_peak_memory_does_not_grow_with_the_file(tmp_path):
    """Peak RSS reading 500k rows stays within 1.3x of reading 100k (``bench/bench_jsonl_memory.py``: 2M vs 200k)."""
    peaks = []
    for n in (100_000, 500_000):
        path = write_many(tmp_path / f"{n}.jsonl", n)
        run = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, check=True)
        peaks.append(int(run.stdout.split()[-1]))
        path.unlink()
    assert peaks[1] <= 1.3 * peaks[0], f"peak RSS {peaks[0] >> 10} MB at 100k rows, {peaks[1] >> 10} MB at 500k"


def test_dictionary_encoded_text_columns_are_read_as_text(tmp_path):
    """What pandas writes for a categorical column (and Parquet keeps), e.g. a repeated ``model`` or ``id``."""
    table = pa.table({
        "id": pa.array(["a", "a", "b"]).dictionary_encode(),
        "question": pa.array(["q", "q", "r"]).dictionary_encode(),
        "rationale": ["The answer is 1.", "The answer is 1.", "The answer is 2."],
        "model": pa.array(["m", "m", "m"]).dictionary_encode(),
        "source": pa.array(["x", "y", "x"]).dictionary_encode(),  # not in the row schema: carried, as text
    })
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    curated, _, manifest = read_split(build(tmp_path, path, ["majority_vote"]).output_dir)
    assert manifest["rows_out"] == 3
    assert {curated.schema.field(c).type for c in ("id", "question", "model", "source")} == {pa.string()}
    assert curated.column("source").to_pylist() == ["x", "y", "x"]


def test_the_fingerprint_is_the_xxh3_of_the_bytes_and_an_empty_file_has_one(tmp_path):
    import xxhash

    data = tmp_path / "c.jsonl"
    data.write_text(json.dumps(ROW) + "\n")
    assert Source.open(data).fingerprint() == xxhash.xxh3_128(data.read_bytes()).hexdigest()
    data.write_text(json.dumps({**ROW, "sample": 1}) + "\n")  # another content, another fingerprint
    assert Source.open(data).fingerprint() == xxhash.xxh3_128(data.read_bytes()).hexdigest()
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert Source.open(empty).fingerprint() == xxhash.xxh3_128().hexdigest()


def test_the_fingerprint_leaves_no_more_of_a_large_file_resident_than_a_chunk(tmp_path):
    import numpy as np
    import xxhash

    from curator.io import FINGERPRINT_CHUNK

    big = tmp_path / "big.jsonl"
    with big.open("wb") as out:
        for _ in range(12):
            out.write(np.random.default_rng(0).bytes(16 << 20))  # 192 MiB, in the page cache once written
    code = ("import sys; from curator.io import Source; s = Source.open(sys.argv[1]); "
            "base = int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS'))); "
            "f = s.fingerprint(); "
            "peak = int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))); "
            "print(f, peak - base)")
    digest, grown = subprocess.run([sys.executable, "-c", code, str(big)], capture_output=True, text=True,
                                   check=True).stdout.split()
    assert digest == xxhash.xxh3_128(big.read_bytes()).hexdigest()
    assert int(grown) << 10 < 3 * FINGERPRINT_CHUNK  # KiB: a chunk or two mapped at a time, not 192 MiB
