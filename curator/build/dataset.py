"""The recipe's ``dataset`` key: the curated split as a Hugging Face dataset, saved and pushed with a card.

It runs once the build's outputs and manifest are written, from
``curated.parquet``, so it never changes what the build wrote and a failed
push leaves a complete build behind (the error says so).
``OUTPUT/dataset`` is ``Dataset.save_to_disk``'s folder (``load_from_disk``
reads it, and so does any command given it as a path), written under a
temporary name and renamed into place, with the card beside the data as
``README.md``. ``push`` uploads the card, then the rows through
``Dataset.push_to_hub``, which keeps the card's text and adds the split's
metadata to it; the token is the one ``huggingface_hub`` finds (``HF_TOKEN``,
``hf auth login``) and is never written.

The rows are the curated ones with their score columns and ``weight``;
``keep`` and ``dropped_by`` say nothing in a split of kept rows and are left out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from curator.build.recipe import DatasetOutput, Recipe
from curator.errors import CuratorError
from curator.hf import INSTALL, DatasetName

DATASET_DIR = "dataset"
DROPPED_COLUMNS = ("keep", "dropped_by")
TAGS = ("rationale-curator", "chain-of-thought", "reasoning", "synthetic")
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
         (10_000_000, "1M<n<10M"))


def write_dataset(recipe: Recipe, output_dir: Path, manifest: dict[str, Any]) -> None:
    """Save and/or push the curated split as the recipe's ``dataset`` key asks; nothing without one."""
    spec = recipe.dataset
    if spec is None:
        return
    try:
        import datasets
    except ImportError:
        raise CuratorError(f"dataset: writing a Hugging Face dataset needs the datasets package ({INSTALL})") from None
    if os.environ.get("HF_DATASETS_DISABLE_PROGRESS_BARS", "").upper() in ("1", "ON", "YES", "TRUE"):
        datasets.disable_progress_bars()  # the switch is read at import, which may have come first
    scratch = Path(tempfile.mkdtemp(prefix=".dataset-", suffix=".tmp", dir=output_dir))
    try:
        rows = datasets.Dataset.from_parquet(str(output_dir / "curated.parquet"), cache_dir=str(scratch / "cache"))
        rows = rows.remove_columns([c for c in DROPPED_COLUMNS if c in rows.column_names])
        card = dataset_card(recipe, manifest, _license(spec, recipe.input), rows.column_names)
        if spec.save:
            _save(rows, card, output_dir / DATASET_DIR, scratch)
        if spec.push:
            _push(rows, card, spec, output_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _save(rows: Any, card: str, dest: Path, scratch: Path) -> None:
    staged = scratch / DATASET_DIR
    rows.save_to_disk(str(staged))
    (staged / "README.md").write_text(card, encoding="utf-8")
    old = scratch / "replaced"
    if dest.exists():
        dest.rename(old)  # the scratch folder, removed with it
    staged.rename(dest)


def _push(rows: Any, card: str, spec: DatasetOutput, output_dir: Path) -> None:
    """The card first, so that ``push_to_hub`` merges the split's metadata into it rather than writing its own."""
    from huggingface_hub import DatasetCard, HfApi

    assert spec.push is not None
    try:
        HfApi().create_repo(spec.push, repo_type="dataset", private=spec.private, exist_ok=True)
        DatasetCard(card).push_to_hub(spec.push, repo_type="dataset", commit_message="Dataset card (rationale-curator)")
        rows.push_to_hub(spec.push, split="train", private=spec.private,
                         commit_message="Curated rows (rationale-curator)")
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        reason = f"{lines[0] if lines else type(exc).__name__} ({type(exc).__name__})"
        raise CuratorError(f"dataset: the build's outputs in {output_dir} are complete, but pushing to "
                           f"{spec.push} failed: {reason}") from None


def _license(spec: DatasetOutput, source: Path | DatasetName) -> str | None:
    """The recipe's ``license``, else what the ``hf:`` input's own card declares."""
    if spec.license or not isinstance(source, DatasetName):
        return spec.license
    from huggingface_hub import DatasetCard

    card = Path(source.name).expanduser() / "README.md" if source.is_local else source.name
    try:
        declared = DatasetCard.load(card, repo_type="dataset").data.license
    except Exception:  # no card, or no network: the card says the licence is unknown
        return None
    return declared if isinstance(declared, str) else None


def dataset_card(recipe: Recipe, manifest: dict[str, Any], license: str | None, columns: list[str]) -> str:
    """The card: metadata, what was kept by which step, the recipe, the columns and the licence notice."""
    rows_out, rows_in = manifest["rows_out"], manifest["rows_in"]
    metadata: dict[str, Any] = {
        "license": license or "unknown",
        "tags": list(TAGS),
        "task_categories": ["text-generation"],
        "size_categories": [next((label for bound, label in SIZES if rows_out < bound), "n>10M")],
    }
    source = recipe.input
    if isinstance(source, DatasetName) and not source.is_local:
        metadata["source_datasets"] = [source.name]
    lines = [
        "---", yaml.safe_dump(metadata, sort_keys=False).strip(), "---", "",
        f"# Curated rationales: {rows_out:,} of {rows_in:,} candidates", "",
        f"Chain-of-thought rationales curated by [rationale-curator](https://pypi.org/project/rationale-curator/) "
        f"(version {manifest['versions'].get('rationale-curator', 'unknown')}) from `{manifest['input']['path']}`, "
        f"answers read by the `{manifest['task']}` task. The split `train` holds the kept rows; each row's `weight` "
        f"is the loss weight the filters gave it.", "",
        "## Curation", "",
        "| step | filter | rows in | kept | dropped |", "|---|---|---:|---:|---:|",
    ]
    for step in manifest["steps"]:
        lines.append(f"| {step['step']} | {step['filter']} | {step['rows_in']:,} | {step['rows_kept']:,} | "
                     f"{step['rows_dropped']:,} |")
    lines += ["", f"{rows_in:,} rows in {manifest['input']['groups']:,} questions; {rows_out:,} kept, "
              f"{manifest['rows_rejected']:,} rejected.", "", "The recipe:", "", "```yaml",
              yaml.safe_dump(manifest["recipe"], sort_keys=False).strip(), "```", "", "## Columns", ""]
    described = _columns(manifest)
    lines += [f"- `{name}`: {described.get(name, 'carried from the input')}" for name in columns]
    lines += ["", "## Licence", "", _notice(license, manifest["input"]["path"]), ""]
    return "\n".join(lines)


def _columns(manifest: dict[str, Any]) -> dict[str, str]:
    """What each column the build knows of means: the row contract's, and each step's scores."""
    columns = {
        "id": "the question's id, shared by its candidates", "question": "the question",
        "rationale": "the candidate rationale, as produced",
        "answer": "the rationale's final answer, normalised by the task", "reference": "the gold answer, normalised",
        "sample": "the candidate's index among its question's", "model": "the model that wrote the rationale",
        "logprob": "the rationale's summed token log-probability", "weight": "the row's loss weight (1.0 unless a "
        "filter set it)",
    }
    for step in manifest["steps"]:
        meaning = step.get("meaning") or {}
        for column in step["columns"]:
            said = meaning.get(column)
            columns[column] = f"score of step `{step['step']}` ({step['filter']})" + (
                f", the {said} values kept" if said in ("higher", "lower") else "")
    return columns


def _notice(license: str | None, source: str) -> str:
    if license:
        own = f"The rows are derived from `{source}` and keep its licence, `{license}`."
    else:
        own = (f"The licence of `{source}` is not known to rationale-curator (set `dataset.license` in the recipe); "
               "check the input's terms before sharing this dataset.")
    return (f"{own} Rationales written by a model may also be bound by that model's terms of use. Credit the "
            "input dataset as its licence asks.")
