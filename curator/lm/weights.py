"""Which weights may be loaded: safetensors only, checked before any library is asked to load them.

A pickled checkpoint (``pytorch_model.bin``, ``adapter_model.bin``) can run
code when it is read, so it is refused everywhere a model or adapter is
loaded, with the one command that converts it. Everything else a folder can
get wrong (empty, only a config, a truncated or corrupt safetensors file)
is found here too, from the files' headers, so the user reads one line
naming the file instead of a loader's traceback. Call :func:`check_model`
before ``from_pretrained`` (which also gets ``use_safetensors=True``, for hub
names) and :func:`check_adapter` before ``PeftModel.from_pretrained``: PEFT
has no safetensors-only switch, so a hub adapter is fetched here, its
safetensors file only, and loaded from the local copy.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from curator.errors import CuratorError

PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
NAT_FILES = ("nat_config.json", "nat_model.safetensors")
"""What a NAT adapter folder holds (:mod:`curator.lm.nat`): its config, and its tensors in safetensors."""
MAX_HEADER = 100 << 20
"""safetensors' own limit on the JSON header."""


def looks_like_path(name: str) -> bool:
    """A name written as a path (``./x``, ``../x``, ``/x``, ``~/x``): it must exist, never go to the hub."""
    return name.startswith((".", "/", "~"))


def check_model(name_or_path: str | Path, what: str = "model", auto_class: str = "AutoModelForCausalLM") -> None:
    """A local model folder holds a config and readable safetensors weights; a hub name is left to the hub.

    ``auto_class`` is the transformers class that loads it, for the conversion command.
    """
    name = str(name_or_path)
    folder = Path(name).expanduser()
    if not folder.exists():
        if looks_like_path(name):
            raise CuratorError(f"{folder}: no such {what} folder")
        return
    if not folder.is_dir():
        raise CuratorError(f"{folder}: a file, not a {what} folder (config.json and model.safetensors)")
    files = sorted(p.name for p in folder.iterdir())
    if not files:
        raise CuratorError(f"{folder}: an empty folder, not a {what} (config.json and model.safetensors)")
    if "config.json" not in files:
        raise CuratorError(f"{folder}: not a {what} folder (no config.json)")
    read_json(folder / "config.json")
    weights = [folder / f for f in files if f.endswith(".safetensors")]
    if not weights:
        _refuse_pickles(folder, files, what, auto_class)
        raise CuratorError(f"{folder}: no weights (model.safetensors) beside config.json")
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        missing = [s for s in shards if s not in files]
        if missing:
            raise CuratorError(f"{folder}: the weight index names {missing[0]}, which is missing")
    for path in weights:
        check_safetensors(path)


def check_adapter(name_or_path: str | Path) -> str:
    """The local folder of a PEFT (or NAT) adapter with readable safetensors weights (a hub adapter fetched first)."""
    name = str(name_or_path)
    folder = Path(name).expanduser()
    if not folder.exists():
        if looks_like_path(name):
            raise CuratorError(f"{folder}: no such adapter folder")
        folder = _fetch_adapter(name)
    if not folder.is_dir():
        raise CuratorError(f"{folder}: a file, not a PEFT adapter folder ({ADAPTER_CONFIG}, {ADAPTER_WEIGHTS})")
    if (folder / NAT_FILES[0]).is_file():  # a NAT adapter (Dust into Gold): its own config, one safetensors file
        weights = folder / NAT_FILES[1]
        if not weights.exists():
            raise CuratorError(f"{folder}: no {NAT_FILES[1]} beside {NAT_FILES[0]}")
        check_safetensors(weights)
        return str(folder)
    adapter_config(folder)
    weights = folder / ADAPTER_WEIGHTS
    if not weights.exists():
        _refuse_pickles(folder, sorted(p.name for p in folder.iterdir()), "adapter", "")
        raise CuratorError(f"{folder}: no {ADAPTER_WEIGHTS} beside {ADAPTER_CONFIG}")
    check_safetensors(weights)
    return str(folder)


def adapter_config(folder: str | Path) -> dict[str, Any]:
    """An adapter folder's ``adapter_config.json``, which must be a JSON object."""
    path = Path(folder) / ADAPTER_CONFIG
    if not path.exists():
        raise CuratorError(f"{folder}: not a PEFT adapter folder (no {ADAPTER_CONFIG})")
    config = read_json(path)
    if not isinstance(config, dict):
        raise CuratorError(f"{path}: must be a JSON object, got {type(config).__name__}")
    return config


def check_safetensors(path: Path) -> None:
    """The file's header is whole and its tensors lie inside the file (what a truncated download breaks)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        start = handle.read(8)
        if len(start) < 8:
            raise CuratorError(f"{path}: not a safetensors file (only {size} bytes)")
        (length,) = struct.unpack("<Q", start)
        if length > min(MAX_HEADER, size - 8):
            raise CuratorError(f"{path}: not a safetensors file (corrupt or truncated header)")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, ValueError):
            raise CuratorError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CuratorError(f"{path}: not a safetensors file (its header is not a JSON object)")
    try:
        ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
    except (KeyError, IndexError, TypeError, ValueError):
        raise CuratorError(f"{path}: not a safetensors file (a tensor entry without data offsets)") from None
    if ends and max(ends) > size - 8 - length:
        raise CuratorError(f"{path}: truncated ({size} bytes, its header describes {8 + length + max(ends)})")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError) as exc:
        raise CuratorError(f"{path}: not valid JSON ({exc})") from None


def _refuse_pickles(folder: Path, files: list[str], what: str, auto_class: str) -> None:
    pickled = [f for f in files if f.endswith(PICKLED_SUFFIXES)]
    if not pickled:
        return
    if what == "adapter":
        target = f"{folder / ADAPTER_WEIGHTS}"
        how = (f"python -c \"import torch; from safetensors.torch import save_file; "
               f"save_file(torch.load('{folder / pickled[0]}', weights_only=True), '{target}')\"")
    else:
        how = (f"python -c \"from transformers import {auto_class} as M; "
               f"M.from_pretrained('{folder}', use_safetensors=False).save_pretrained('{folder}')\"")
    raise CuratorError(
        f"{folder}: holds pickled weights only ({pickled[0]}), which curator does not load; "
        f"if you trust them, convert them to safetensors once: {how}"
    )


def _fetch_adapter(name: str) -> Path:
    """A hub adapter's config and safetensors weights in the local cache (never its pickles)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, allow_patterns=[ADAPTER_CONFIG, ADAPTER_WEIGHTS]))
    except (OSError, ValueError) as exc:
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") else ""
        raise CuratorError(
            f"{name}: no such adapter folder, and it cannot be fetched from the hub{offline}: {first_line(exc)}"
        ) from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
