"""What, beside a step's options, changes its scores: the files its options name, and code.

A model retrained in place or an edited validation set changes the files'
stamps; an edited plugin (an editable install, a file beside the recipe)
changes its source; either gives the step a new cache key, so it re-scores.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from pathlib import Path
from typing import Any

MAX_STAMPED_FILES = 10_000


def file_stamps(values: Any, base_dir: Path) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of each local file an option names, folders included.

    A model retrained in place or an edited validation set then changes the
    cache key. Strings that are not local paths (hub names) add nothing.
    """
    stamps: list[tuple[str, int, int]] = []

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, str) and value and "\n" not in value:
            path = Path(value).expanduser()
            path = path if path.is_absolute() else base_dir / path
            try:
                if path.is_file():
                    files = [path]
                elif path.is_dir():
                    files = sorted(path.rglob("*"))[:MAX_STAMPED_FILES]
                else:
                    return
            except OSError:
                return
            for file in files:
                if file.is_file():
                    info = file.stat()
                    stamps.append((str(file), info.st_size, info.st_mtime_ns))

    visit(values)
    return stamps


BASE_MODULES = frozenset({"builtins", "abc", "typing", "curator.filter"})
"""Modules whose classes define the contract, not the scores (curator.Filter's): left out of code fingerprints."""


def code_fingerprint(cls: type) -> str:
    """A hash of the source of the modules that define ``cls`` and its base classes.

    Read from the files Python imported them from, so editing a plugin in an
    editable install, or a filter defined beside the recipe, changes it. A
    class without a source file (defined at a prompt) contributes its name.
    """
    digest = hashlib.sha256()
    seen: set[str] = set()
    for klass in cls.__mro__:
        module_name = klass.__module__
        if module_name in BASE_MODULES or module_name in seen:
            continue
        seen.add(module_name)
        digest.update(module_name.encode())
        module = sys.modules.get(module_name)
        try:
            digest.update(Path(inspect.getfile(module or klass)).read_bytes())
        except (TypeError, OSError):
            digest.update(klass.__qualname__.encode())
    return digest.hexdigest()[:32]
