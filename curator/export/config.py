"""What one ``curator export`` writes, and what it wrote."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from curator.errors import CuratorError
from curator.export.llamafactory import LLAMAFACTORY_FORMATS
from curator.formats import EXPORT_FORMATS, TEMPLATES
from curator.settings import check_bounds, setting


@dataclass(frozen=True)
class ExportConfig:
    """Every setting of an export; the command's options are derived from these fields."""

    file: str = setting(argument=True, help="Curated rows: Parquet, JSONL, Arrow or a saved dataset folder.")
    format: str = setting(choices=EXPORT_FORMATS, help="Target layout.")
    output: str = setting(help="OUT.jsonl")
    template: str = setting(
        "natural", choices=TEMPLATES, help="Prompt/completion layout for trl-prompt-completion (the trainer's --format)."
    )
    where: tuple[str, ...] = setting((), help="Keep rows where COLUMN=VALUE (or !=, null); repeatable.")
    extra: tuple[str, ...] = setting((), help="Copy this column into each record (e.g. id); repeatable.")
    weight: bool = setting(
        True, help="Carry the weight column in the formats whose readers take extra columns (all but fine-tune-cot)."
    )
    system: str | None = setting(
        None, help="A system prompt before each question (trl-messages, alpaca, sharegpt)."
    )
    chat_template: str | None = setting(
        None,
        metavar="MODEL",
        help="trl-messages: render each exchange with this model's chat template (a folder or hub name) into "
        "the prompt/completion text 'curator train --format chat' learns.",
    )
    llamafactory_dir: str | None = setting(
        None,
        metavar="DIR",
        help="alpaca, sharegpt: register the export in DIR/dataset_info.json (default: the one beside OUT).",
    )

    def __post_init__(self) -> None:
        check_bounds(self, "export")
        if self.chat_template and self.format != "trl-messages":
            raise CuratorError(f"export: --chat-template renders trl-messages, not {self.format}")
        if self.system and self.format in ("trl-prompt-completion", "fine-tune-cot"):
            raise CuratorError(f"export: --system is for the conversational formats, not {self.format}")
        if self.llamafactory_dir and self.format not in LLAMAFACTORY_FORMATS:
            raise CuratorError(f"export: --llamafactory-dir registers alpaca or sharegpt files, not {self.format}")


@dataclass
class ExportResult:
    """What an export wrote: records, rows skipped for weight 0, and where LLaMA-Factory finds it."""

    output: Path
    written: int
    skipped: int
    weights_dropped: int
    """Rows with a weight other than 1 written to a format that cannot carry it (fine-tune-cot)."""
    dataset_info: Path | None = dataclasses.field(default=None)
