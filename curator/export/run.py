"""Writing the export: rows selected as the trainer selects them, text from the trainer's layouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from curator.errors import CuratorError
from curator.export.config import ExportConfig, ExportResult
from curator.export.llamafactory import LLAMAFACTORY_FORMATS, register
from curator.formats import WEIGHTED_FORMATS, export_record
from curator.io import Source
from curator.outputs import atomic_path, check_output_file
from curator.train.data import row_weights, where_mask


def run_export(config: ExportConfig) -> ExportResult:
    """Write ``config.file``'s rows in ``config.format``; register LLaMA-Factory files in a ``dataset_info.json``."""
    if config.llamafactory_dir and not Path(config.llamafactory_dir).is_dir():
        raise CuratorError(f"--llamafactory-dir {config.llamafactory_dir}: no such folder")
    tokenizer = _chat_tokenizer(config.chat_template) if config.chat_template else None
    source = Source.open(config.file)
    carry_weight = config.weight and config.format in WEIGHTED_FORMATS
    written = skipped = weights_dropped = 0
    output = check_output_file(config.output, inputs=source.files())
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as out:
        first_row = 1
        for batch in source.checked_batches():
            table = pa.Table.from_batches([batch])
            weights = row_weights(table, config.file, first_row)  # before --where, so an error names the file's row
            first_row += batch.num_rows
            for clause in config.where:
                mask = where_mask(table, clause, config.file)
                table, weights = table.filter(pa.array(mask)), weights[mask]
            missing = [c for c in config.extra if c not in table.column_names]
            if missing:
                raise CuratorError(
                    f"{config.file}: --extra column '{missing[0]}' not found (has: {', '.join(table.column_names)})"
                )
            skipped += int((weights == 0).sum())
            kept = weights > 0
            if config.format not in WEIGHTED_FORMATS and "weight" not in config.extra:
                weights_dropped += int((kept & (weights != 1)).sum())
            with_weight = carry_weight and "weight" in table.column_names
            for row, weight in zip(table.filter(pa.array(kept)).to_pylist(), weights[kept].tolist()):
                record = export_record(row, config.format, config.template, system=config.system, tokenizer=tokenizer)
                if with_weight:
                    record["weight"] = weight
                record.update({c: row[c] for c in config.extra})
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
    info = None
    if config.format in LLAMAFACTORY_FORMATS:
        dataset_dir = Path(config.llamafactory_dir) if config.llamafactory_dir else None
        info = register(output, config.format, dataset_dir, system=bool(config.system))
    return ExportResult(output, written, skipped, weights_dropped, info)


def _chat_tokenizer(model: str) -> Any:
    """The tokenizer whose chat template renders ``trl-messages`` (never the model's remote code)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise CuratorError("--chat-template loads a tokenizer with transformers (pip install 'rationale-curator[lm]')") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        lines = str(exc).strip().splitlines()
        raise CuratorError(f"--chat-template {model}: cannot load its tokenizer ({lines[0] if lines else exc})") from None
    if not getattr(tokenizer, "chat_template", None):
        raise CuratorError(f"--chat-template {model}: its tokenizer has no chat template")
    return tokenizer
