"""``curator export``: curated rows as JSONL for TRL, LLaMA-Factory or Fine-tune-CoT.

The text comes from :mod:`curator.formats`, the code the built-in trainer
formats with, and rows are selected as the trainer selects them (``--where``,
weight-0 rows skipped), so training elsewhere sees the examples ``curator
train`` would. LLaMA-Factory's files are registered in a ``dataset_info.json``
(:mod:`curator.export.llamafactory`).
"""

from __future__ import annotations

from curator.export.config import ExportConfig, ExportResult
from curator.export.run import run_export

__all__ = ["ExportConfig", "ExportResult", "run_export"]
