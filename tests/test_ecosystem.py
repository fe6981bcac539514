"""Exports read by their consumers: TRL's SFTTrainer and LLaMA-Factory's dataset loader (opt-in: ``-m ecosystem``).

``pip install 'rationale-curator[ecosystem]'`` (TRL) runs the TRL half;
LLaMA-Factory pins its own datasets, transformers and TRL, so it lives in a
virtual environment of its own, named by ``CURATOR_LLAMAFACTORY_PYTHON``
(its python), where ``tests/llamafactory_check.py`` reads the exports.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers_export import ROWS, TRAINED, chat_tokenizer, export, write_curated

pytestmark = pytest.mark.ecosystem

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Llama whose tokenizer has a chat template (with TRL's generation markers), saved together."""
    pytest.importorskip("torch")
    from curator.testing.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-chat"), tokenizer=chat_tokenizer())


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    return write_curated(tmp_path_factory.mktemp("curated") / "curated.parquet")


def curator_samples(curated: Path, format: str, tokenizer):
    """What ``curator train --format FORMAT`` learns from the same rows: full token sequences and their targets."""
    from curator.train.config import TrainConfig
    from curator.train.data import read_training_table
    from curator.train.objectives import SFT

    config = TrainConfig(data=str(curated), model="m", output="o", format=format)
    samples, _ = SFT(config).encode(read_training_table(str(curated), [], SFT.columns), tokenizer)
    return [(np.append(s.input_ids, s.targets[-1]), s.targets) for s in samples]


def trl_step(path: Path, model: Path, output: Path, **options):
    """TRL's SFTTrainer on the export as ``load_dataset("json")`` reads it: one optimiser step; its tokenised rows."""
    trl = pytest.importorskip("trl")
    from datasets import load_dataset
    from transformers import AutoTokenizer

    dataset = load_dataset("json", data_files=str(path), split="train")
    args = trl.SFTConfig(output_dir=str(output), max_steps=1, per_device_train_batch_size=len(TRAINED),
                         report_to=[], save_strategy="no", use_cpu=True, logging_steps=1, **options)
    trainer = trl.SFTTrainer(model=str(model), args=args, train_dataset=dataset,
                             processing_class=AutoTokenizer.from_pretrained(model))
    trainer.train()
    loss = trainer.state.log_history[0]["loss"]
    assert math.isfinite(loss) and loss > 0
    return [(np.array(r["input_ids"]), np.array(r["labels"])) for r in trainer.train_dataset]


@pytest.mark.parametrize(
    ("format", "options"),
    [
        ("natural", ["--format", "trl-prompt-completion"]),
        ("fine-tune-cot", ["--format", "trl-prompt-completion", "--template", "fine-tune-cot"]),
        ("chat", ["--format", "trl-messages", "--chat-template", "MODEL"]),
    ],
)
def test_trl_learns_what_curator_learns_from_prompt_completion(tiny, curated, tmp_path, format, options):
    from transformers import AutoTokenizer

    path = tmp_path / "export.jsonl"
    records = export(curated, path, *[str(tiny) if o == "MODEL" else o for o in options])
    assert all("weight" in r for r in records)  # carried, and TRL takes the extra column
    theirs = trl_step(path, tiny, tmp_path / "trl")
    ours = curator_samples(curated, format, AutoTokenizer.from_pretrained(tiny))
    assert len(theirs) == len(ours) == len(TRAINED)
    for (their_ids, their_labels), (our_ids, our_targets) in zip(theirs, ours):
        assert their_ids.tolist() == our_ids.tolist()
        assert their_labels[1:].tolist() == our_targets.tolist()  # TRL's completion mask, shifted as the loss is


def test_trl_messages_with_the_assistant_mask_learn_what_curator_chat_learns(tiny, curated, tmp_path):
    """``trl-messages``: TRL renders the template itself; with ``assistant_only_loss`` it learns curator's tokens.

    TRL's sequence goes on with the template's newline after the end of the
    turn, which carries no loss; curator's chat format ends at the turn's end.
    """
    from transformers import AutoTokenizer

    path = tmp_path / "messages.jsonl"
    export(curated, path, "--format", "trl-messages")
    theirs = trl_step(path, tiny, tmp_path / "trl", assistant_only_loss=True)
    ours = curator_samples(curated, "chat", AutoTokenizer.from_pretrained(tiny))
    for (their_ids, their_labels), (our_ids, our_targets) in zip(theirs, ours, strict=True):
        n = len(our_ids)
        assert their_ids[:n].tolist() == our_ids.tolist()
        assert their_labels[1:n].tolist() == our_targets.tolist()
        assert (their_labels[n:] == -100).all()


def test_llamafactory_reads_the_exports_through_dataset_info(tiny, curated, tmp_path):
    python = os.environ.get("CURATOR_LLAMAFACTORY_PYTHON")
    if not python:
        pytest.skip("CURATOR_LLAMAFACTORY_PYTHON names no LLaMA-Factory environment (see this module's docstring)")
    data = tmp_path / "data"
    data.mkdir()
    export(curated, data / "kept_alpaca.jsonl", "--format", "alpaca", "--system", "Be brief.")
    export(curated, data / "kept_sharegpt.jsonl", "--format", "sharegpt")
    done = subprocess.run([python, str(HERE / "llamafactory_check.py"), str(data), str(tiny), "kept_alpaca",
                           "kept_sharegpt"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    read = {r["name"]: r for r in map(json.loads, (line for line in done.stdout.splitlines()
                                                   if line.startswith('{"name"')))}
    turns = [[{"role": "user", "content": r["question"].strip()}, {"role": "assistant", "content": r["rationale"].strip()}]
             for r in TRAINED]
    for name, system in (("kept_alpaca", "Be brief."), ("kept_sharegpt", "")):
        rows = read[name]["rows"]
        assert [[*r["_prompt"], *r["_response"]] for r in rows] == turns
        assert [r["_system"] for r in rows] == [system] * len(TRAINED)
        assert read[name]["tokenized"] == len(TRAINED)  # its supervised preprocessing kept every example
    assert ROWS[2]["weight"] == 0  # the weight-0 row is not exported, so LLaMA-Factory never sees it
