"""Writing outputs so that nothing looks complete unless it is.

Every file is written under a temporary name in the same folder and renamed
into place when done, so a crash leaves either the old file or none.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto it when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically, pretty-printed, with non-JSON values as strings."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def package_versions(*extra: str) -> dict[str, str]:
    """Versions of Python, this package and the named libraries that are installed."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("rationale-curator", "pyarrow", "numpy", *extra):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions
