"""Writing outputs so that nothing looks complete unless it is, and no two runs share a folder.

Every file is written under a temporary name in the same folder and renamed
into place when done, so a crash leaves either the old file or none; files
get the mode the user's umask gives (``mkstemp`` alone would make them
0600, unreadable by a colleague or a server running as another user).

A command that writes a folder holds :func:`output_lock` on it for the whole
run: an ``flock`` on ``.curator.lock`` that the kernel drops however the
process ends (even ``kill -9``), so a second run into the same folder stops
at once with one line, and a lock that can be taken means that no live run
owns the temporaries there: they are a dead run's and are swept. The score
cache is shared by concurrent builds, so its temporaries are swept only by a
build that finds no other using it (:func:`cache_in_use`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from curator.errors import CuratorError

LOCK_NAME = ".curator.lock"
CACHE_LOCK = ".curator-cache.lock"
"""The cache's own lock file: a cache may be an output folder too, and one process must not wait on itself."""
SWEEP_DEPTH = 2
"""How deep below an output folder a dead run's temporaries are looked for (``checkpoints/.step-N.tmp``)."""


def umask() -> int:
    """The process umask, read without changing it where the system says it (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: 0666 less the umask."""
    return 0o666 & ~umask()


def readable(*paths: str | Path) -> None:
    """Give files written by other libraries (some write 0600 temporaries and rename them) the umask's mode."""
    mode = file_mode()
    for path in paths:
        if Path(path).is_file():
            os.chmod(path, mode)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto it, with the umask's mode, when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.filename is not None and not _is_write_error(exc):
            raise
        raise CuratorError(f"{path}: cannot be written ({reason(exc)})") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically, pretty-printed, with non-JSON values as strings."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


# -- checking where a run writes ---------------------------------------------------------------


def check_not_input(outputs: Iterable[str | Path], inputs: Iterable[str | Path | None]) -> None:
    """Refuse to write over a file (or folder) the run reads, also when a link leads to it."""
    existing = [Path(p) for p in inputs if p is not None and str(p) and Path(p).exists()]
    for output in outputs:
        output = Path(output)
        if not output.exists():
            continue
        for source in existing:
            if os.path.samefile(output, source):
                same = "" if output.absolute() == source.absolute() else f" ({source})"
                raise CuratorError(f"{output}: is this run's input{same}; write the output somewhere else")


def check_output_file(path: str | Path, inputs: Iterable[str | Path | None] = ()) -> Path:
    """An output file that can be written by rename: not the input, a folder, a device, or under a file."""
    path = Path(path)
    check_not_input([path], inputs)
    if path.exists() or path.is_symlink():
        mode = os.stat(path).st_mode if path.exists() else 0
        if stat.S_ISDIR(mode):
            raise CuratorError(f"{path}: is a folder; give a file name for the output")
        if path.exists() and not stat.S_ISREG(mode):
            raise CuratorError(f"{path}: not a regular file (a device or pipe); give a file name for the output")
    _check_creatable(path.parent, f"{path}: cannot be written")
    return path


def check_output_folder(folder: str | Path, inputs: Iterable[str | Path | None] = (),
                        writes: Iterable[str] = ()) -> Path:
    """An output folder that exists or can be made, and is writable; ``writes`` are the files the run puts in it."""
    folder = Path(folder)
    inputs = list(inputs)
    # A folder read whole (a saved dataset, an adapter) may take outputs beside its files; a file may not be replaced.
    check_not_input([folder], [p for p in inputs if p is not None and Path(p).is_file()])
    check_not_input([folder / name for name in writes], inputs)
    if folder.exists() and not folder.is_dir():
        kind = "a file" if folder.is_file() else "not a folder (a device or pipe)"
        raise CuratorError(f"{folder}: is {kind}; the output must be a folder")
    _check_creatable(folder, f"{folder}: cannot be used as the output folder")
    return folder


def _check_creatable(folder: Path, what: str) -> None:
    """``folder`` exists and is writable, or can be created: name the component in the way if not."""
    for parent in [folder, *folder.absolute().parents]:
        if parent.exists():
            if not parent.is_dir():
                raise CuratorError(f"{what}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise CuratorError(f"{what}: {parent} is not writable")
            return


# -- one run per output folder ----------------------------------------------------------------


@contextmanager
def output_lock(folder: str | Path, command: str, *, inputs: Iterable[str | Path | None] = (),
                writes: Iterable[str] = ()) -> Iterator[Path]:
    """Hold ``folder`` for this run: checked, created, locked, swept of dead runs' temporaries.

    A second run into a locked folder gets one line and exit code 2. A
    failure inside the block removes this run's temporaries before it
    propagates. ``writes`` are the files the run may replace, none of which
    may be one of its ``inputs``. The file that says the folder is complete
    (``manifest.json``) is the command's to remove before it replaces the
    first output, and to write last.
    """
    folder = check_output_folder(folder, inputs, writes)
    fd = _open_lock(folder, LOCK_NAME, "the output folder")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CuratorError(
                f"{folder}: another run is writing here ({_holder(fd)}); wait for it, or choose another output"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": command, "since": time.time()}).encode())
        sweep_temporaries(folder)
        try:
            yield folder
        except OSError as exc:
            sweep_temporaries(folder)
            if exc.filename is None and _is_write_error(exc):  # pyarrow's writers name no file
                raise CuratorError(f"{folder}: cannot write the outputs ({reason(exc)})") from None
            raise
        except BaseException:
            sweep_temporaries(folder)
            raise
    finally:
        os.close(fd)  # releases the lock


def _open_lock(folder: Path, name: str, role: str) -> int:
    """The folder, made if need be, and a descriptor of its lock file (not yet locked)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder / name, os.O_RDWR | os.O_CREAT, file_mode())
    except OSError as exc:
        raise CuratorError(f"{folder}: cannot be used as {role} ({reason(exc)})") from None


WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def _is_write_error(exc: OSError) -> bool:
    """A full disk or read-only file system, also from pyarrow, which says ``[errno 28]`` in its text only."""
    if exc.errno in WRITE_ERRORS:
        return True
    found = re.search(r"\[errno (\d+)\]", str(exc))
    return found is not None and int(found.group(1)) in WRITE_ERRORS


def reason(exc: OSError) -> str:
    """What the system said, on one line: ``No space left on device``."""
    found = re.search(r"\[errno (\d+)\]", str(exc))
    if found:
        return os.strerror(int(found.group(1)))
    if exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"curator {holder['command']}, pid {holder['pid']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another curator process"


def sweep_temporaries(folder: Path, depth: int = SWEEP_DEPTH) -> None:
    """Remove ``.*.tmp`` files and folders under ``folder``; a sub-folder another run locks is left alone.

    A score cache's folders are its own builds' to sweep (:func:`cache_in_use`), not an output folder's.
    """
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    if depth > 1 and (folder / CACHE_LOCK).exists():
        depth = 1
    for entry in entries:
        try:
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            elif depth > 1 and entry.is_dir(follow_symlinks=False) and not os.path.exists(
                os.path.join(entry.path, LOCK_NAME)
            ):
                sweep_temporaries(Path(entry.path), depth - 1)
        except OSError:
            continue


@contextmanager
def cache_in_use(root: str | Path, folders: Iterable[str] = ("prepared", "scores")) -> Iterator[Path]:
    """Use the cache at ``root`` beside other builds; sweep dead builds' temporaries when none is live.

    Every build holds a shared ``flock`` on the cache's lock file while it
    runs. One that can take it exclusively first knows it is alone, so every
    temporary left in ``folders`` (a working copy or score part being written
    when its build was killed, or the disk filled) is a dead build's.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise CuratorError(f"{root}: the score cache must be a folder, and this is a file (set 'cache' elsewhere)")
    _check_creatable(root, f"{root}: cannot be used as the score cache")
    fd = _open_lock(root, CACHE_LOCK, "the score cache")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            for name in folders:
                sweep_temporaries(root / name)
        except BlockingIOError:
            pass  # another build uses the cache: its temporaries may be live
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield root
    finally:
        os.close(fd)


def package_versions(*extra: str) -> dict[str, str]:
    """Versions of Python, this package and the named libraries that are installed."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("rationale-curator", "pyarrow", "numpy", *extra):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions
