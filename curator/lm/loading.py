"""Loading models by local path or hub name, on a sensible device and dtype.

Scoring wants bf16 weights on a GPU (fp32 reductions happen in the scoring
code) and fp32 on a CPU, where bf16 matmuls are slow and inexact. Remote code
runs only when a recipe asks for it, and only safetensors weights are loaded
(:mod:`curator.lm.weights` checks every folder first). A single adapter is merged into its base
for speed; two adapters compared with each other stay unmerged on one base,
so the base is in memory once and the scorer switches between them.
Every adapter goes through :func:`apply_adapter`: a PEFT folder (or hub
name) is merged, a NAT folder (:mod:`curator.lm.nat`) is attached, since it
cannot be merged.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curator.errors import CuratorError, MissingDependency
from curator.lm.threads import choose_threads
from curator.lm.weights import NAT_FILES, check_adapter, check_model, first_line

if TYPE_CHECKING:
    import torch

DEVICE = re.compile(r"^(cpu|mps|(cuda|xpu)(:\d+)?)$")
"""The devices a command's ``--device`` (or a recipe's ``device``) may name."""

DTYPES = ("auto", "bfloat16", "float16", "float32")
"""Weight dtypes of the commands and model-backed filters (``auto``: bf16 on CUDA, fp32 elsewhere).

Training takes all but float16, which would need loss scaling."""

NAT_CANNOT_MERGE = (
    "a NAT adapter cannot be merged into plain weights: its integration unit weighs the two branches "
    "per token, from the layer's input"
)


def is_nat_adapter(path: str | None) -> bool:
    """Whether ``path`` is a NAT folder (Dust into Gold), which only the transformers code paths can run."""
    return path is not None and Path(path, NAT_FILES[0]).is_file()


def check_nat_backend(adapter: str | None, backend: str, command: str) -> None:
    """A NAT folder runs on the transformers backend only: vLLM and servers cannot run its integration unit."""
    if is_nat_adapter(adapter) and backend != "transformers":
        raise CuratorError(
            f"{command}: {adapter} is a NAT adapter, which runs on the transformers backend only, "
            f"not {backend!r}"
        )


def apply_adapter(model: Any, adapter: str) -> Any:
    """``model`` with ``adapter``: a PEFT adapter (folder or hub name) merged in, a NAT folder attached."""
    if is_nat_adapter(adapter):
        from curator.lm.nat import load_nat

        return load_nat(model, adapter)
    return _with_adapter(model, adapter).merge_and_unload()


@dataclass
class LoadedModel:
    """A model, its tokenizer and the device it sits on.

    ``adapter`` names the PEFT adapter to activate before using ``model``, and
    ``adapters_off`` runs a PEFT model as its bare base: two handles can then
    share one base in memory and differ only in the adapter they switch on.
    """

    model: Any
    tokenizer: Any
    device: str
    adapter: str | None = None
    adapters_off: bool = False

    @contextlib.contextmanager
    def active(self) -> Iterator[Any]:
        """The model with this handle's adapter switched on, for the time of the block."""
        if self.adapters_off:
            with self.model.disable_adapter():
                yield self.model
            return
        if self.adapter is not None:
            self.model.set_adapter(self.adapter)
        yield self.model

    @property
    def pad_id(self) -> int:
        return pad_id(self.tokenizer)


def pad_id(tokenizer: Any) -> int:
    """The token id batches pad with: the tokenizer's pad token, else its EOS, else 0.

    A language model never sees it (it is masked out), but a sequence
    classifier finds each row's last token by it, so classifiers are given
    the same id (:func:`give_pad_id`).
    """
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def give_pad_id(model: Any, tokenizer: Any) -> None:
    """Tell a sequence classifier without a pad id the one the batches use."""
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_id(tokenizer)


def require_lm(needed_by: str) -> None:
    """Fail with an install hint, not an ImportError, when the ``lm`` extra is missing."""
    for package in ("torch", "transformers"):
        try:
            __import__(package)
        except ImportError:
            raise MissingDependency(package, needed_by, extra="lm") from None


def default_device() -> str:
    """The first CUDA device when there is one, otherwise the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | None, option: str = "--device") -> None:
    """The spelling of a device (no torch needed): ``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``xpu[:N]``."""
    if device is not None and not DEVICE.match(device):
        raise CuratorError(f"{option}: {device!r} is not a device (use cpu, cuda, cuda:N, mps or xpu)")


def resolve_device(device: str | None, option: str = "--device") -> str:
    """``device``, or the default one, checked against what this machine and this torch build have."""
    import torch

    if device is None:
        return default_device()
    check_device(device, option)
    kind, _, number = device.partition(":")
    backend = {"cuda": torch.cuda, "xpu": getattr(torch, "xpu", None)}.get(kind)
    if kind == "mps" and not torch.backends.mps.is_available():
        raise CuratorError(f"{option}: {device!r}, but MPS is not available here (use cpu)")
    if kind in ("cuda", "xpu"):
        if backend is None or not backend.is_available():
            built = "" if kind != "cuda" or torch.version.cuda else " (this torch is built without CUDA)"
            raise CuratorError(f"{option}: {device!r}, but there is no {kind.upper()} device here{built}; use cpu")
        if number and int(number) >= backend.device_count():
            raise CuratorError(f"{option}: {device!r}, but there are {backend.device_count()} {kind} devices here")
    return device


def torch_dtype(name: str | None, device: str) -> torch.dtype:
    """The weight dtype: ``auto`` (or None) is bf16 on CUDA and fp32 elsewhere."""
    import torch

    if name in (None, "auto"):
        cuda_bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {name!r}")
    return getattr(torch, name)


def load_causal_lm(
    name_or_path: str,
    *,
    adapter: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> LoadedModel:
    """A causal LM in eval mode, with ``adapter`` (a PEFT folder or hub name, or a NAT folder) applied."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    adapter = None if adapter is None else check_adapter(adapter)
    model = _from_pretrained(AutoModelForCausalLM, name_or_path, device, dtype, trust_remote_code, revision)
    if adapter is not None:
        model = apply_adapter(model, adapter)
    return LoadedModel(model.eval(), _tokenizer(name_or_path, trust_remote_code, revision), device)


def load_adapter_pair(
    name_or_path: str,
    first: str | None,
    second: str | None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> tuple[LoadedModel, LoadedModel]:
    """Two views of one base model, each with its own adapter (None: the bare base).

    With a NAT folder among them, see :func:`curator.lm.nat_views.nat_views`.
    """
    from transformers import AutoModelForCausalLM

    if first is None and second is None:
        raise ValueError("an adapter pair needs at least one adapter")
    device = resolve_device(device)
    first, second = (None if a is None else check_adapter(a) for a in (first, second))

    def load_base() -> Any:
        return _from_pretrained(AutoModelForCausalLM, name_or_path, device, dtype, trust_remote_code, revision)

    if is_nat_adapter(first) or is_nat_adapter(second):
        from curator.lm.nat_views import nat_views

        tokenizer = _tokenizer(name_or_path, trust_remote_code, revision)
        return nat_views(load_base, tokenizer, device, first, second)
    base = load_base()
    named = [(name, path) for name, path in (("first", first), ("second", second)) if path is not None]
    model = _with_adapter(base, named[0][1], adapter_name=named[0][0])
    for name, path in named[1:]:
        _load_adapter(model, path, name)
    model.eval()
    tokenizer = _tokenizer(name_or_path, trust_remote_code, revision)
    views = tuple(
        LoadedModel(model, tokenizer, device, adapter=None if path is None else name, adapters_off=path is None)
        for name, path in (("first", first), ("second", second))
    )
    return views[0], views[1]


def load_sequence_classifier(
    name_or_path: str,
    *,
    adapter: str | None = None,
    num_labels: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> LoadedModel:
    """A sequence-classification model (a reward model, a ranker), padding-aware in batches.

    ``adapter`` (a PEFT folder) is merged in; ``num_labels`` sizes a head the
    adapter brings, when ``name_or_path`` is a bare base model.
    """
    from transformers import AutoModelForSequenceClassification

    device = resolve_device(device)
    adapter = None if adapter is None else check_adapter(adapter)
    labels = {} if num_labels is None else {"num_labels": num_labels}
    model = _from_pretrained(
        AutoModelForSequenceClassification, name_or_path, device, dtype, trust_remote_code, revision, **labels
    )
    if adapter is not None:
        model = _with_adapter(model, adapter).merge_and_unload()
    tokenizer = _tokenizer(name_or_path, trust_remote_code, revision)
    give_pad_id(model, tokenizer)
    return LoadedModel(model.eval(), tokenizer, device)


def _from_pretrained(
    auto_class: Any,
    name_or_path: str,
    device: str,
    dtype: str | None,
    trust_remote_code: bool,
    revision: str | None,
    **extra: Any,
) -> Any:
    if device.startswith("cpu"):
        choose_threads()
    check_model(name_or_path, auto_class=auto_class.__name__)
    try:
        return auto_class.from_pretrained(
            name_or_path,
            dtype=torch_dtype(dtype, device),
            device_map=device,
            trust_remote_code=trust_remote_code,
            revision=revision,
            use_safetensors=True,
            **extra,
        )
    except (OSError, ValueError) as exc:
        raise CuratorError(f"{name_or_path}: cannot load the model ({hub_hint(exc)})") from None


def _with_adapter(model: Any, adapter: str, **kwargs: Any) -> Any:
    """PEFT on a folder :func:`check_adapter` has checked (safetensors weights, a JSON config)."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, adapter, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise _adapter_error(adapter, exc) from None


def _load_adapter(model: Any, adapter: str, name: str) -> None:
    try:
        model.load_adapter(adapter, adapter_name=name)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise _adapter_error(adapter, exc) from None


def _adapter_error(adapter: str, exc: BaseException) -> CuratorError:
    if "size mismatch" in str(exc):
        return CuratorError(f"{adapter}: its tensors do not fit this model's shapes (an adapter for another base?)")
    return CuratorError(f"{adapter}: cannot load the adapter onto this model ({first_line(exc)})")


def hub_hint(exc: BaseException) -> str:
    """A loader's error in one line, saying so when the hub is off and the name is not cached."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return f"not in the local Hugging Face cache, and HF_HUB_OFFLINE is set: {first_line(exc)}"
    return first_line(exc)


def _tokenizer(name_or_path: str, trust_remote_code: bool, revision: str | None) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError, TypeError) as exc:
        raise CuratorError(f"{name_or_path}: cannot load the tokenizer ({hub_hint(exc)})") from None
