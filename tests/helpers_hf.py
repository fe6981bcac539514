"""Local folders laid out like Hugging Face hub dataset repos, which ``datasets.load_dataset`` reads as it reads the hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DATA = Path(__file__).resolve().parent / "data"


def gsm8k_rows(n: int = 6) -> list[dict[str, str]]:
    """GSM8K train rows (``question``, ``answer`` with ``<<…>>`` and ``#### N``), shipped in tests/data."""
    with open(DATA / "tasks_gsm8k_train.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle][:n]


def hub_folder(root: Path, configs: dict[str, dict[str, list[dict[str, Any]]]], *, license: str | None = "mit",
               suffix: str = "parquet") -> Path:
    """A dataset repo: ``CONFIG/SPLIT-00000-of-00001.SUFFIX`` files and a card whose YAML ``configs:`` names them."""
    root.mkdir(parents=True, exist_ok=True)
    card = ["---"] + ([f"license: {license}"] if license else []) + ["configs:"]
    for config, splits in configs.items():
        card += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            path = root / config / f"{split}-00000-of-00001.{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if suffix == "parquet":
                pq.write_table(pa.Table.from_pylist(rows), path)
            else:
                path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            card += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    card += ["---", "", "A test dataset."]
    (root / "README.md").write_text("\n".join(card) + "\n", encoding="utf-8")
    return root
