"""Reading every input format, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from helpers_build import build, read_split

from curator import CuratorError
from curator.testing import make_candidates


@pytest.fixture
def table() -> pa.Table:
    return make_candidates([["1", "1", "2"], ["5", None], ["7"]], references=["1", "5", "8"])


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_all_formats_give_the_same_build(tmp_path, table):
    paths = {
        "jsonl": write_jsonl(tmp_path / "c.jsonl", table.to_pylist()),
        "parquet": tmp_path / "c.parquet",
        "arrow": tmp_path / "c.arrow",
        "hf": tmp_path / "hf",
    }
    pq.write_table(table, paths["parquet"])
    feather.write_feather(table, paths["arrow"], compression="uncompressed")
    datasets = pytest.importorskip("datasets")
    datasets.Dataset(table).save_to_disk(str(paths["hf"]))
    results = {}
    for name, path in paths.items():
        curated, rejected, manifest = read_split(build(tmp_path, path, ["majority_vote"], name=name).output_dir)
        assert manifest["input"]["format"] == name
        results[name] = (curated.select(["id", "sample", "answer"]).to_pylist(), rejected.num_rows)
    assert len({json.dumps(r) for r in results.values()}) == 1
    assert results["jsonl"][1] == 2  # "2" loses the vote in q0; the unparsable row in q1


def test_answer_is_filled_by_the_task_when_missing(tmp_path):
    rows = [{"id": "a", "question": "q", "rationale": "3 + 4 = 7. The answer is 7.", "reference": "#### 7"},
            {"id": "a", "question": "q", "rationale": "I think it is 1,000.", "reference": "#### 7"}]
    curated, rejected, manifest = read_split(
        build(tmp_path, write_jsonl(tmp_path / "c.jsonl", rows), ["correctness"]).output_dir)
    assert manifest["input"]["answer_filled_by_task"] is True
    assert curated.column("answer").to_pylist() == ["7"]
    assert rejected.column("answer").to_pylist() == ["1000"]
    assert curated.column("reference").to_pylist() == ["7"]


GOOD = {"id": "a", "question": "q", "rationale": "r 1"}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([json.dumps(GOOD), '{"id": "b", "question": "q", "rationale": }'], r"c\.jsonl:2: invalid JSON"),
        ([json.dumps(GOOD), json.dumps({**GOOD, "id": "b", "question": 5})],
         r"c\.jsonl:2: column 'question' must be a string, got int"),
        ([json.dumps({"id": "a", "question": "q"})], r"c\.jsonl: missing required column 'rationale'"),
        ([json.dumps(GOOD), json.dumps({**GOOD, "id": None})], r"c\.jsonl:2: column 'id' is null"),
        ([json.dumps(GOOD), json.dumps({**GOOD, "question": None})], r"c\.jsonl:2: column 'question' is null"),
        ([json.dumps(GOOD), json.dumps({**GOOD, "id": "b"}), json.dumps(GOOD)],
         r"c\.jsonl: id 'a' is not contiguous \(line 1 and line 3"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, lines, message):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CuratorError, match=message):
        build(tmp_path, path, ["majority_vote"])
    assert not (tmp_path / "out" / "curated.parquet").exists()


def test_wrong_parquet_type_and_missing_file(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a"], "question": [[1, 2]], "rationale": ["r"]}), path)
    with pytest.raises(CuratorError, match=r"c\.parquet: column 'question' must be a string"):
        build(tmp_path, path, [])
    with pytest.raises(CuratorError, match=r"nothing\.jsonl: no such file"):
        build(tmp_path, tmp_path / "nothing.jsonl", [])


def test_regroup_option_gathers_scattered_groups(tmp_path):
    rows = [{"id": i, "question": "q", "rationale": f"The answer is {a}."} for i, a in
            [("a", 1), ("b", 2), ("a", 1), ("b", 3), ("a", 4)]]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    curated, rejected, manifest = read_split(build(tmp_path, path, ["majority_vote"], regroup=True).output_dir)
    assert manifest["input"]["groups"] == 2
    assert curated.column("id").to_pylist() == ["a", "a", "b"]
    assert curated.column("answer").to_pylist() == ["1", "1", "2"]


def test_groups_are_never_split_across_batches(tmp_path):
    answers = [[str(i % 3)] * (1 + i % 7) for i in range(200)]
    path = tmp_path / "c.parquet"
    pq.write_table(make_candidates(answers), path)
    result = build(tmp_path, path, ["majority_vote"], batch_rows=10)
    curated, rejected, manifest = read_split(result.output_dir)
    assert rejected.num_rows == 0 and curated.num_rows == sum(map(len, answers))
    assert manifest["input"]["groups"] == 200


def test_cli_exit_code_2_and_one_line_message(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "question": "q", "rationale": "r"}\n{oops\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"input: {path}\ntask: gsm8k\nfilters: [majority_vote]\noutput: {tmp_path / 'out'}\n")
    run = subprocess.run([sys.executable, "-m", "curator", "build", str(recipe), "--no-progress"],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0
    assert run.stderr.startswith("curator: error: ") and "c.jsonl:2: invalid JSON" in run.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_supplied_answers_are_canonicalised_by_the_task(tmp_path):
    table = make_candidates([["18.0", "18", "$1,000.50", "1000.5", None]])
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    curated, rejected, _ = read_split(build(tmp_path, path, ["majority_vote"]).output_dir)
    both = pa.concat_tables([curated, rejected]).sort_by("sample")
    assert both.column("answer").to_pylist() == ["18", "18", "1000.5", "1000.5", None]
    assert curated.column("vote_share").to_pylist()[0] == 0.5
