"""``hf:NAME`` inputs, read through ``datasets.load_dataset`` on local folders laid out like hub repos.

The folders have data files and a card whose YAML ``configs:`` names the
configs and splits; ``load_dataset`` resolves a name that is a folder
locally through the same call that reads the hub, so these tests run the
hub code path up to the download.
"""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
from helpers_hf import gsm8k_rows, hub_folder

from curator import CuratorError
from curator.cli import main
from curator.dataset_shapes import gsm8k_rationale, last_boxed
from curator.hf import DatasetName, DatasetSource
from curator.io import Source
from curator.plugins import get_registry
from curator.questions import QuestionFile, question_id

datasets = pytest.importorskip("datasets")
GSM8K = get_registry().task("gsm8k")

MATH_ROWS = [
    {"problem": "What is $1/2 + 1/4$?", "solution": "Add: $\\frac{2}{4}+\\frac{1}{4}=\\boxed{\\frac{3}{4}}$.",
     "level": "Level 1"},
    {"problem": "Compute $2^3$.", "solution": "We have $2^3 = 8$, so the answer is $\\boxed{8}$.", "level": "Level 1"},
]
CHATS = [
    {"messages": [{"role": "system", "content": "Think step by step."}, {"role": "user", "content": "1 + 1?"},
                  {"role": "assistant", "content": "1 + 1 = 2. The answer is 2."}]},
    {"messages": [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "The answer is 4."}]},
]


@pytest.fixture
def gsm8k(tmp_path):
    rows = gsm8k_rows(6)
    return hub_folder(tmp_path / "gsm8k", {"main": {"train": rows[:4], "test": rows[4:]}, "socratic": {"train": rows[:2]}})


def test_gsm8k_candidates_stream_in_batches_with_solutions_as_rationales(gsm8k, monkeypatch, tmp_path):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    source = Source.open(DatasetName(str(gsm8k), "main", "train"))
    assert isinstance(source, DatasetSource)
    batches = list(source.checked_batches(batch_rows=3))
    assert [b.num_rows for b in batches] == [3, 1]  # streamed batch by batch
    rows = [row for batch in batches for row in batch.to_pylist()]
    raw = gsm8k_rows(4)
    assert [r["question"] for r in rows] == [r["question"] for r in raw]
    assert [r["id"] for r in rows] == [question_id(r["question"]) for r in raw]
    assert [r["rationale"] for r in rows] == [gsm8k_rationale(r["answer"]) for r in raw]
    assert rows[0]["rationale"].endswith("The answer is 72.") and "<<" not in rows[0]["rationale"]
    assert [r["reference"] for r in rows] == [r["answer"].rpartition("####")[2].strip() for r in raw]
    assert "answer" not in batches[0].schema.names  # the solution is not the rationale's parsed answer
    assert not list((tmp_path / "hf-cache").rglob("*.arrow"))  # streamed: nothing materialised in the cache


def test_questions_and_test_sets_from_hf(gsm8k):
    questions = QuestionFile(f"hf:{gsm8k}", GSM8K, config="main", split="test")
    read = list(questions)
    raw = gsm8k_rows(6)[4:]
    assert [q.question for q in read] == [r["question"] for r in raw]
    assert [q.reference for q in read] == [r["answer"].rpartition("####")[2].strip() for r in raw]
    assert questions.count() == 2
    from curator.evaluate.run import read_test_set

    table = read_test_set(f"hf:{gsm8k}", GSM8K, 1, config="main", split="test")
    assert table.column("question").to_pylist() == [raw[0]["question"]]


def test_math_and_chat_shapes(tmp_path):
    math = hub_folder(tmp_path / "math", {"default": {"test": MATH_ROWS}}, suffix="jsonl")
    rows = Source.open(f"hf:{math}").read_table().to_pylist()
    assert [r["question"] for r in rows] == [r["problem"] for r in MATH_ROWS]
    assert [r["reference"] for r in rows] == ["\\frac{3}{4}", "8"]  # nested braces balanced
    assert [r["rationale"] for r in rows] == [r["solution"] for r in MATH_ROWS]
    assert rows[0]["level"] == "Level 1" and "problem" not in rows[0]  # other columns carried
    with_answers = [dict(r, answer=a) for r, a in zip(MATH_ROWS, ["3/4", "8"])]
    gold = hub_folder(tmp_path / "math500", {"default": {"test": with_answers}})
    assert Source.open(f"hf:{gold}", ("question",)).read_table().column("reference").to_pylist() == ["3/4", "8"]
    assert last_boxed("no box") is None and last_boxed("\\boxed{unclosed") is None

    chats = hub_folder(tmp_path / "chats", {"default": {"train": CHATS}}, suffix="jsonl")
    rows = Source.open(f"hf:{chats}").read_table().to_pylist()
    assert [(r["question"], r["rationale"]) for r in rows] == [
        ("1 + 1?", "1 + 1 = 2. The answer is 2."), ("2 + 2?", "The answer is 4.")]


def test_build_reads_an_hf_input_relative_to_its_recipe(gsm8k, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("input: hf:./gsm8k\nconfig: main\nsplit: train\ntask: gsm8k\nfilters: [correctness]\n"
                      "output: out\n")
    main(["build", str(recipe)])
    curated = pq.read_table(tmp_path / "out" / "curated.parquet")
    assert curated.num_rows == 4 and all(curated.column("correct").to_pylist())  # human solutions are right
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["input"]["path"] == f"hf:{gsm8k} (config main, split train)"
    assert manifest["input"]["format"] == "hf-stream"


def test_train_data_from_hf(gsm8k):
    from curator.train.data import read_training_table

    data = read_training_table(f"hf:{gsm8k}", [], ("question", "rationale"), dataset_config="socratic", split="train")
    assert data.table.column("rationale").to_pylist() == [gsm8k_rationale(r["answer"]) for r in gsm8k_rows(2)]


def test_fingerprint_is_the_content(gsm8k, tmp_path):
    def fingerprint(folder, split="train"):
        return Source.open(DatasetName(str(folder), "main", split)).fingerprint()

    copy = shutil.copytree(gsm8k, tmp_path / "copy")
    assert fingerprint(copy) == fingerprint(gsm8k)  # a copy shares the cache
    assert fingerprint(gsm8k, "test") != fingerprint(gsm8k)
    rows = gsm8k_rows(4)
    rows[0]["question"] += " Explain."
    hub_folder(copy, {"main": {"train": rows, "test": gsm8k_rows(6)[4:]}, "socratic": {"train": rows[:2]}})
    assert fingerprint(copy) != fingerprint(gsm8k)


@pytest.mark.parametrize(
    ("name", "config", "split", "message"),
    [
        ("gsm8k", None, "train", "the dataset has configs main, socratic; name one as the config"),
        ("gsm8k", "mian", "train", "no config 'mian' (configs: main, socratic)"),
        ("gsm8k", "main", None, "the dataset has splits train, test; name one as the split"),
        ("gsm8k", "main", "valid", "no split 'valid' (splits: train, test)"),
        ("missing", None, None, "no such folder"),
        ("texts", None, None, "missing required column 'question'"),
        ("multiturn", None, None, "row 2: column 'messages' has turns ['user', 'assistant', 'user', 'assistant']"),
    ],
)
def test_bad_names_are_one_line_exit_2(gsm8k, tmp_path, capsys, name, config, split, message):
    hub_folder(tmp_path / "texts", {"default": {"train": [{"text": "hello"}]}})
    turns = CHATS[1]["messages"]
    hub_folder(tmp_path / "multiturn", {"default": {"train": [CHATS[1], {"messages": turns + turns}]}})
    recipe = tmp_path / "r.yaml"
    keys = "".join(f"{k}: {v}\n" for k, v in (("config", config), ("split", split)) if v)
    recipe.write_text(f"input: hf:./{name}\n{keys}task: gsm8k\nfilters: [correctness]\noutput: out\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["build", str(recipe)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    assert message in err and f"hf:{tmp_path / name}" in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_config_and_split_are_for_hf_inputs_only(tmp_path, capsys):
    with pytest.raises(CuratorError, match="--config/--split name a Hugging Face dataset"):
        QuestionFile(tmp_path / "q.jsonl", GSM8K, split="train")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("input: c.parquet\nsplit: train\ntask: gsm8k\n")
    with pytest.raises(SystemExit):
        main(["build", str(recipe)])
    assert "'config' and 'split' choose a Hugging Face dataset's" in capsys.readouterr().err


def test_generate_options_reach_the_question_file(gsm8k):
    from curator.generate import GenerateConfig

    config = GenerateConfig(input=f"hf:{gsm8k}", config="main", split="test", output="o", task="gsm8k", model="m")
    assert config.fingerprint()["input"] == f"hf:{gsm8k} (config main, split test)"
