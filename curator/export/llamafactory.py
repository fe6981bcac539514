"""LLaMA-Factory's ``dataset_info.json``: how its loader finds an exported file and reads its columns.

LLaMA-Factory loads a dataset by the name of its entry in
``DATASET_DIR/dataset_info.json``: ``file_name`` (joined to that folder; an
absolute path stays as it is), ``formatting`` (``alpaca`` or ``sharegpt``),
``columns`` (which record key holds the instruction, input, output,
conversation, system prompt) and, for ShareGPT, the role ``tags``. The entry
written here names exactly the keys :func:`curator.formats.export_record`
writes, even where they are LLaMA-Factory's defaults, so the file reads the
same whatever defaults a later LLaMA-Factory takes. The entry's name is the
export's file name without its suffix; other entries of the file are kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from curator.errors import CuratorError
from curator.formats import SHAREGPT_ROLES
from curator.outputs import write_json

LLAMAFACTORY_FORMATS = ("alpaca", "sharegpt")
INFO_FILE = "dataset_info.json"


def dataset_entry(format: str, file_name: str, *, system: bool) -> dict[str, Any]:
    """The ``dataset_info.json`` entry of an ``alpaca`` or ``sharegpt`` export."""
    said = {"system": "system"} if system else {}
    if format == "alpaca":
        columns = {"prompt": "instruction", "query": "input", "response": "output", **said}
        return {"file_name": file_name, "formatting": "alpaca", "columns": columns}
    if format == "sharegpt":
        tags = {"role_tag": "from", "content_tag": "value", "user_tag": SHAREGPT_ROLES["user"],
                "assistant_tag": SHAREGPT_ROLES["assistant"]}
        return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "conversations", **said},
                "tags": tags}
    raise CuratorError(f"LLaMA-Factory reads alpaca and sharegpt files, not {format}")


def register(export: Path, format: str, dataset_dir: Path | None, *, system: bool) -> Path:
    """Add (or replace) the export's entry in ``dataset_dir``'s (default: the export's folder's) ``dataset_info.json``."""
    folder = Path(dataset_dir) if dataset_dir is not None else export.parent
    info_path = folder / INFO_FILE
    entries: dict[str, Any] = {}
    if info_path.exists():
        try:
            entries = json.loads(info_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CuratorError(f"{info_path}: not valid JSON ({exc})") from None
        if not isinstance(entries, dict):
            raise CuratorError(f"{info_path}: expected a JSON object of dataset entries")
    target = export.resolve()
    try:
        file_name = os.path.relpath(target, folder.resolve())
    except ValueError:  # another drive
        file_name = str(target)
    if file_name.startswith(".."):
        file_name = str(target)
    entries[export.stem] = dataset_entry(format, file_name, system=system)
    write_json(info_path, entries)
    return info_path
