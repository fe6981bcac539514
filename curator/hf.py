"""Hugging Face datasets as inputs: ``hf:owner/name`` wherever a table is read.

A recipe's ``input``, ``generate --input``, ``eval --data`` and ``train
--data`` may name a dataset as ``hf:NAME`` with a config and a split
(recipe keys ``config``/``split``, options ``--config``/``--split``; train's
``--config`` is its settings file, so there it is ``--data-config``). It is
read through ``datasets.load_dataset(NAME, CONFIG, streaming=True)`` in Arrow
batches: a hub dataset of any size is never downloaded or held whole, and
the readers (the build's working copy, a question file) stream it like a
file. Rows are mapped from the common shapes (GSM8K, MATH, chats; see
:mod:`curator.dataset_shapes`) to the columns the reader needs.

``NAME`` may also be a local folder laid out like a hub repo (data files,
and a ``README.md`` whose YAML ``configs:`` names the configs and splits):
``datasets`` resolves a name that is a folder locally and any other on the
Hub, through the same call, so the tests, which build such folders, run the
hub path up to the download.

A dataset's identity (what the build's working copy and a training run's
resume check are keyed by) is the repo's commit on the Hub, as ``datasets``
resolves it, and the bytes of the files for a local folder; the config, the
split and this reader's mapping code are part of it too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from curator.dataset_shapes import map_columns
from curator.errors import CuratorError
from curator.io import Source

PREFIX = "hf:"
INSTALL = "pip install 'rationale-curator[hf]'"


@dataclass(frozen=True)
class DatasetName:
    """``hf:NAME`` with its config and split (None: the dataset's only one)."""

    name: str
    config: str | None = None
    split: str | None = None

    @classmethod
    def parse(cls, text: str | Path, config: str | None = None, split: str | None = None) -> DatasetName:
        name = str(text)[len(PREFIX) :].strip()
        if not name:
            raise CuratorError(f"{text!s}: name a dataset after 'hf:' (hf:owner/name or hf:./folder)")
        return cls(name, config, split)

    @property
    def is_local(self) -> bool:
        """A folder on disk (``datasets`` loads an existing folder locally, as here)."""
        return Path(self.name).expanduser().is_dir()

    @property
    def looks_like_path(self) -> bool:
        return self.name.startswith((".", "/", "~"))

    def resolved(self, base: Path) -> DatasetName:
        """A local folder's path made absolute from ``base`` (a recipe's folder); a hub name as it is."""
        if not self.looks_like_path:
            return self
        path = Path(self.name).expanduser()
        return replace(self, name=str(path if path.is_absolute() else (base / path).resolve()))

    def __str__(self) -> str:
        chosen = ", ".join(f"{key} {value}" for key, value in (("config", self.config), ("split", self.split)) if value)
        return f"{PREFIX}{self.name}" + (f" ({chosen})" if chosen else "")


def is_dataset_name(value: object) -> bool:
    return isinstance(value, DatasetName) or (isinstance(value, (str, Path)) and str(value).startswith(PREFIX))


def dataset_input(
    value: str | Path, config: str | None, split: str | None, options: str = "--config/--split"
) -> str | Path | DatasetName:
    """``value`` as :meth:`curator.io.Source.open` takes it: an ``hf:`` name with its config and split, or a path."""
    if is_dataset_name(value):
        return DatasetName.parse(value, config, split)
    if config is not None or split is not None:
        raise CuratorError(f"{value}: {options} name a Hugging Face dataset's config and split (hf:NAME), not a file")
    return value


@dataclass(frozen=True)
class DatasetSource(Source):
    """A Hugging Face dataset split, read as a stream of record batches in curator's columns."""

    dataset: DatasetName = field(kw_only=True)

    def files(self) -> list[Path]:
        """The files of a local dataset folder (hidden ones aside); none for a hub dataset."""
        if not self.dataset.is_local:
            return []
        root = Path(self.dataset.name).expanduser()
        return sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root)))

    def fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(repr((self.dataset.config, self.dataset.split, self.required)).encode())
        for module in (__file__, _shapes_file()):
            digest.update(Path(module).read_bytes())
        if self.dataset.is_local:
            root = Path(self.dataset.name).expanduser()
            for file in self.files():
                digest.update(str(file.relative_to(root)).encode())
                with open(file, "rb") as handle:
                    while chunk := handle.read(1 << 22):
                        digest.update(chunk)
        else:
            digest.update(f"{self.dataset.name}@{self._builder().hash}".encode())
        return digest.hexdigest()

    def num_rows(self) -> int | None:
        """The split's row count when the dataset's card records it, else None (count by reading)."""
        splits = self._builder().info.splits
        known = splits.get(self.dataset.split) if splits else None
        return known.num_examples if known is not None and known.num_examples else None

    def license(self) -> str | None:
        """The licence the dataset's card declares, if any."""
        return self._builder().info.license or None

    def iter_batches(self, batch_rows: int = 16384) -> Iterator[pa.RecordBatch]:
        label = str(self.path)
        first_row = 1
        with _translated(self.dataset):
            stream = _load(self.dataset).with_format("arrow")
            for table in stream.iter(batch_size=batch_rows):
                for batch in table.to_batches():
                    yield map_columns(batch, self.required, label, first_row)
                    first_row += batch.num_rows

    def _builder(self) -> Any:
        datasets = _datasets(self.dataset)
        with _translated(self.dataset):
            return datasets.load_dataset_builder(self.dataset.name, self.dataset.config)


def open_dataset(value: str | Path | DatasetName, required: Sequence[str]) -> DatasetSource:
    """Resolve the config and split now, so that a wrong name is one line before any work starts."""
    name = value if isinstance(value, DatasetName) else DatasetName.parse(value)
    if name.looks_like_path and not name.is_local:
        raise CuratorError(f"{name}: no such folder")
    datasets = _datasets(name)
    with _translated(name):
        configs = datasets.get_dataset_config_names(name.name)
    if name.config is None and len(configs) > 1:
        raise CuratorError(f"{name}: the dataset has configs {', '.join(configs)}; name one as the config")
    if name.config is not None and name.config not in configs:
        raise CuratorError(f"{name}: no config '{name.config}' (configs: {', '.join(configs)})")
    with _translated(name):
        splits = list(datasets.load_dataset(name.name, name.config, streaming=True))
    split = name.split or (splits[0] if len(splits) == 1 else None)
    if split is None:
        raise CuratorError(f"{name}: the dataset has splits {', '.join(splits)}; name one as the split")
    if split not in splits:
        raise CuratorError(f"{name}: no split '{split}' (splits: {', '.join(splits)})")
    resolved = replace(name, split=split)
    return DatasetSource(Path(str(resolved)), "hf-stream", tuple(required), dataset=resolved)


def _load(name: DatasetName) -> Any:
    return _datasets(name).load_dataset(name.name, name.config, split=name.split, streaming=True)


def _datasets(name: DatasetName) -> Any:
    try:
        import datasets
    except ImportError:
        raise CuratorError(f"{name}: reading a Hugging Face dataset needs the datasets package ({INSTALL})") from None
    return datasets


def _shapes_file() -> str:
    from curator import dataset_shapes

    return dataset_shapes.__file__


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


@contextmanager
def _translated(name: DatasetName) -> Iterator[None]:
    """What ``datasets`` and the Hub raise, as one line naming the dataset."""
    try:
        yield
    except CuratorError:
        raise
    except Exception as exc:
        kind = type(exc).__name__
        if kind == "DatasetNotFoundError":
            message = "no such dataset on the Hub, or no access to it (a gated or private one needs `hf auth login`)"
        elif isinstance(exc, ConnectionError):
            message = "cannot reach the Hugging Face Hub (offline? HF_HUB_OFFLINE=1 reads what is cached)"
        else:
            lines = str(exc).strip().splitlines()
            message = f"{lines[0] if lines else kind} ({kind})"
        raise CuratorError(f"{name}: {message}") from None
