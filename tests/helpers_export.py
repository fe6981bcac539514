"""Curated rows, a chat template and an exporter shared by the export tests and the ecosystem suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curator.cli import main

# Turns end with EOS inside the assistant's {% generation %} block (TRL's assistant mask), then a newline.
CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}</s>{% endgeneration %}"
    "{% else %}{{ message['content'] }}</s>{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)

ROWS: list[dict[str, Any]] = [
    {   # as a completions endpoint writes it after "A:": a leading space (and a trailing newline)
        "id": "a", "question": "Tom has 2 eggs and buys 3. How many?\n", "rationale": " 2 + 3 = 5. The answer is 5.\n",
        "answer": "5", "weight": 1.0, "dropped_by": None,
    },
    {"id": "b", "question": "Ali has 4 books and buys 1. How many?", "rationale": "4 + 1 = 6. The answer is 6.",
     "answer": "6", "weight": 1.0, "dropped_by": "correctness"},
    {"id": "c", "question": "Kai has 1 apple.", "rationale": "1.", "answer": "1", "weight": 0.0, "dropped_by": None},
    {"id": "d", "question": "Lena has 7 cookies.", "rationale": "7. The answer is 7.", "answer": None, "weight": 1.5,
     "dropped_by": None},
]
TRAINED = [r for r in ROWS if r["weight"] > 0]


def write_curated(path: Path) -> Path:
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


def chat_tokenizer(folder: Path | None = None) -> Any:
    """The tiny byte-level BPE tokenizer with :data:`CHAT_TEMPLATE`, saved to ``folder`` when given."""
    from curator.testing.tiny import arithmetic_corpus, train_tokenizer

    tokenizer = train_tokenizer(arithmetic_corpus())
    tokenizer.chat_template = CHAT_TEMPLATE
    if folder is not None:
        tokenizer.save_pretrained(folder)
    return tokenizer


def export(curated: Path, out: Path, *options: str) -> list[dict[str, Any]]:
    main(["export", str(curated), "--output", str(out), *options])
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
