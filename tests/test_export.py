"""``curator export``: the trainer's own text, in the layouts TRL and LLaMA-Factory read, and their dataset_info."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers_export import ROWS, TRAINED, chat_tokenizer, export, write_curated

from curator.cli import main
from curator.formats import chat, format_row, messages

# LLaMA-Factory's dataset_info.json vocabulary (its data/README and DatasetAttr in data/parser.py, 0.9.x).
LLAMAFACTORY_KEYS = {"file_name", "formatting", "ranking", "subset", "split", "folder", "num_samples", "columns", "tags"}
LLAMAFACTORY_COLUMNS = {"prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
                        "audios", "chosen", "rejected", "kto_tag"}
LLAMAFACTORY_TAGS = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag",
                     "system_tag"}


@pytest.fixture
def curated(tmp_path):
    return write_curated(tmp_path / "curated.parquet")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat-tokenizer")
    chat_tokenizer(folder)
    return folder


def test_prompt_completion_is_the_trainers_text_with_one_space(curated, tmp_path):
    for template in ("natural", "fine-tune-cot"):
        records = export(curated, tmp_path / f"{template}.jsonl", "--format", "trl-prompt-completion",
                         "--template", template)
        expected = [format_row(r, template) for r in TRAINED]
        assert records == [{"prompt": e.prompt, "completion": e.completion, "weight": r["weight"]}
                           for e, r in zip(expected, TRAINED)]
    natural = export(curated, tmp_path / "n.jsonl", "--format", "trl-prompt-completion")
    assert natural[0] == {"prompt": "Q: Tom has 2 eggs and buys 3. How many?\nA:",
                          "completion": " 2 + 3 = 5. The answer is 5.", "weight": 1.0}
    cot = export(curated, tmp_path / "c.jsonl", "--format", "fine-tune-cot")
    assert cot[0] == {"prompt": "Tom has 2 eggs and buys 3. How many? ###",
                      "completion": " 2 + 3 = 5. The answer is 5. --> 5"}
    assert cot[2] == {"prompt": "Lena has 7 cookies. ###", "completion": " 7. The answer is 7."}  # no "--> None"


def test_the_export_tokenises_as_the_trainer_encodes(curated, tmp_path, tokenizer_dir):
    """What TRL tokenises from the export is what ``curator train`` learns from the same rows."""
    pytest.importorskip("torch")
    from curator.train.config import TrainConfig
    from curator.train.data import encode_examples, read_training_table
    from curator.train.objectives import SFT

    tokenizer = chat_tokenizer()
    formats = {"natural": ["--format", "trl-prompt-completion"],
               "fine-tune-cot": ["--format", "trl-prompt-completion", "--template", "fine-tune-cot"],
               "chat": ["--format", "trl-messages", "--chat-template", str(tokenizer_dir)]}
    for format, options in formats.items():
        config = TrainConfig(data=str(curated), model="m", output="o", format=format)
        trained, _ = SFT(config).encode(read_training_table(str(curated), [], SFT.columns), tokenizer)
        records = export(curated, tmp_path / f"{format}.jsonl", *options)
        from curator.formats import Example

        exported, _ = encode_examples([Example(r["prompt"], r["completion"]) for r in records],
                                      np.array([r["weight"] for r in records], np.float32), tokenizer,
                                      max_length=1024, loss_on_prompt=False, prompt_special_tokens=format != "chat")
        assert len(trained) == len(exported) == len(TRAINED)
        for ours, theirs in zip(trained, exported):
            assert np.array_equal(ours.input_ids, theirs.input_ids) and np.array_equal(ours.targets, theirs.targets)
            assert ours.weight == theirs.weight


def test_conversational_formats(curated, tmp_path, tokenizer_dir, capsys):
    records = export(curated, tmp_path / "m.jsonl", "--format", "trl-messages")
    assert records[0] == {"messages": [{"role": "user", "content": "Tom has 2 eggs and buys 3. How many?"},
                                       {"role": "assistant", "content": "2 + 3 = 5. The answer is 5."}],
                          "weight": 1.0}
    assert [r["messages"] for r in records] == [messages(r["question"], r["rationale"]) for r in TRAINED]
    system = export(curated, tmp_path / "s.jsonl", "--format", "trl-messages", "--system", "Think step by step.")
    assert system[2]["messages"][0] == {"role": "system", "content": "Think step by step."}
    rendered = export(curated, tmp_path / "r.jsonl", "--format", "trl-messages", "--chat-template", str(tokenizer_dir),
                      "--system", "Be brief.", "--no-weight")
    tokenizer = chat_tokenizer()
    expected = chat(ROWS[0]["question"], ROWS[0]["rationale"], tokenizer, "Be brief.")
    assert rendered[0] == {"prompt": expected.prompt, "completion": expected.completion}
    assert rendered[0] == {"prompt": "<s>system\nBe brief.</s>\n<s>user\nTom has 2 eggs and buys 3. How many?</s>\n"
                                     "<s>assistant\n", "completion": "2 + 3 = 5. The answer is 5.</s>"}
    alpaca = export(curated, tmp_path / "a.jsonl", "--format", "alpaca", "--system", "Be brief.")
    assert alpaca[1] == {"instruction": ROWS[1]["question"], "input": "", "output": ROWS[1]["rationale"],
                         "system": "Be brief.", "weight": 1.0}
    sharegpt = export(curated, tmp_path / "g.jsonl", "--format", "sharegpt", "--extra", "id")
    assert sharegpt[2] == {"conversations": [{"from": "human", "value": ROWS[3]["question"]},
                                             {"from": "gpt", "value": ROWS[3]["rationale"]}], "weight": 1.5, "id": "d"}
    assert [r["id"] for r in sharegpt] == ["a", "b", "d"]
    capsys.readouterr()
    export(curated, tmp_path / "f.jsonl", "--format", "fine-tune-cot")
    captured = capsys.readouterr()  # the summary on stdout, the note about weights on stderr
    assert "skipped 1 weight-0 rows" in captured.out
    assert "1 rows have weights other than 1, which fine-tune-cot cannot carry" in captured.err


def test_llamafactory_dataset_info_beside_the_export(curated, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    alpaca = export(curated, folder / "curated_alpaca.jsonl", "--format", "alpaca", "--system", "Be brief.")
    sharegpt = export(curated, folder / "curated_sharegpt.jsonl", "--format", "sharegpt")
    info = json.loads((folder / "dataset_info.json").read_text())
    assert info == {
        "curated_alpaca": {"file_name": "curated_alpaca.jsonl", "formatting": "alpaca",
                           "columns": {"prompt": "instruction", "query": "input", "response": "output",
                                       "system": "system"}},
        "curated_sharegpt": {"file_name": "curated_sharegpt.jsonl", "formatting": "sharegpt",
                             "columns": {"messages": "conversations"},
                             "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                                      "assistant_tag": "gpt"}},
    }
    # LLaMA-Factory's schema, field by field: known keys, and every mapped column in every record.
    for name, records in (("curated_alpaca", alpaca), ("curated_sharegpt", sharegpt)):
        entry = info[name]
        assert set(entry) <= LLAMAFACTORY_KEYS and entry["formatting"] in ("alpaca", "sharegpt")
        assert set(entry["columns"]) <= LLAMAFACTORY_COLUMNS and set(entry.get("tags", {})) <= LLAMAFACTORY_TAGS
        assert (folder / entry["file_name"]).is_file()
        for record in records:
            assert all(column in record for column in entry["columns"].values())
    for record in sharegpt:  # LLaMA-Factory's sharegpt reader wants user, assistant, user, ... turns
        roles = [turn[info["curated_sharegpt"]["tags"]["role_tag"]] for turn in record["conversations"]]
        assert roles == ["human", "gpt"]


def test_llamafactory_dir_updates_an_existing_file(curated, tmp_path):
    data_dir = tmp_path / "LLaMA-Factory" / "data"
    data_dir.mkdir(parents=True)
    (data_dir / "dataset_info.json").write_text(json.dumps({"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}))
    export(curated, tmp_path / "exports" / "iwsi.jsonl", "--format", "sharegpt", "--llamafactory-dir", str(data_dir))
    info = json.loads((data_dir / "dataset_info.json").read_text())
    assert list(info) == ["alpaca_en_demo", "iwsi"]
    assert info["iwsi"]["file_name"] == str((tmp_path / "exports" / "iwsi.jsonl").resolve())  # outside DIR: absolute
    assert not (tmp_path / "exports" / "dataset_info.json").exists()


def test_where_selects_the_negatives(curated, tmp_path):
    records = export(curated, tmp_path / "o.jsonl", "--format", "alpaca", "--where", "dropped_by=correctness")
    assert [r["instruction"] for r in records] == [ROWS[1]["question"]]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--format", "alpaca", "--where", "colour=red"], "no column 'colour'"),
        (["--format", "alpaca", "--extra", "colour"], "--extra column 'colour' not found"),
        (["--format", "alpaca", "--chat-template", "m"], "--chat-template renders trl-messages, not alpaca"),
        (["--format", "fine-tune-cot", "--system", "s"], "--system is for the conversational formats"),
        (["--format", "trl-messages", "--llamafactory-dir", "."], "registers alpaca or sharegpt files"),
        (["--format", "sharegpt", "--llamafactory-dir", "nowhere"], "--llamafactory-dir nowhere: no such folder"),
        (["--format", "trl-messages", "--chat-template", "."], "--chat-template .: cannot load its tokenizer"),
    ],
)
def test_bad_input_is_one_line_exit_2(curated, tmp_path, capsys, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(curated), "--output", str(tmp_path / "x.jsonl"), *options])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_missing_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path / "none.parquet"), "--format", "alpaca", "--output", str(tmp_path / "x.jsonl")])
    assert exit_info.value.code == 2 and "no such file" in capsys.readouterr().err
