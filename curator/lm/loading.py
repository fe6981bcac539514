"""Loading models by local path or hub name, on a sensible device and dtype.

Scoring wants bf16 weights on a GPU (fp32 reductions happen in the scoring
code) and fp32 on a CPU, where bf16 matmuls are slow and inexact. Remote code
runs only when a recipe asks for it. A single adapter is merged into its base
for speed; two adapters compared with each other stay unmerged on one base,
so the base is in memory once and the scorer switches between them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from curator.errors import MissingDependency
from curator.lm.threads import choose_threads

if TYPE_CHECKING:
    import torch

DTYPES = ("auto", "bfloat16", "float16", "float32")
"""Weight dtypes of the commands and model-backed filters (``auto``: bf16 on CUDA, fp32 elsewhere).

Training takes all but float16, which would need loss scaling."""


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
    """A causal LM in eval mode, with ``adapter`` (a PEFT folder or hub name) merged in."""
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    model = _from_pretrained(AutoModelForCausalLM, name_or_path, device, dtype, trust_remote_code, revision)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
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
    """Two views of one base model, each with its own adapter (None: the bare base)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if first is None and second is None:
        raise ValueError("an adapter pair needs at least one adapter")
    device = device or default_device()
    base = _from_pretrained(AutoModelForCausalLM, name_or_path, device, dtype, trust_remote_code, revision)
    named = [(name, path) for name, path in (("first", first), ("second", second)) if path is not None]
    model = PeftModel.from_pretrained(base, named[0][1], adapter_name=named[0][0])
    for name, path in named[1:]:
        model.load_adapter(path, adapter_name=name)
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

    device = device or default_device()
    labels = {} if num_labels is None else {"num_labels": num_labels}
    model = _from_pretrained(
        AutoModelForSequenceClassification, name_or_path, device, dtype, trust_remote_code, revision, **labels
    )
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
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
    return auto_class.from_pretrained(
        name_or_path,
        dtype=torch_dtype(dtype, device),
        device_map=device,
        trust_remote_code=trust_remote_code,
        revision=revision,
        **extra,
    )


def _tokenizer(name_or_path: str, trust_remote_code: bool, revision: str | None) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
