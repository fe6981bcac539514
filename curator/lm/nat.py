"""NAT (Dust into Gold's Negative Assistant Training): frozen negative LoRA, positive LoRA, integration unit.

Each adapted projection ``base`` (a ``torch.nn.Linear``) becomes a
:class:`NatLinear`, computing for its input ``x``, as the released code's
``peft_NAT/tuners/lora.py`` does in its ``mix`` mode:

- the two branch outputs ``pos = base(x) + B(A(x))·s`` (trainable, B starts
  at zero) and ``neg = base(x) + B_neg(A_neg(x))·s_neg`` (frozen, from the
  negative adapter);
- a query from the layer's input, ``q = Q(x)``, keys ``K(pos)``, ``K(neg)``
  and values ``change2(gelu(change1(·)))`` of each branch output;
- ``p = softmax(q·k)`` over the two branches (no ``1/√d``, temperature 1) and
  ``α = p_neg − 0.5 ∈ [−0.5, 0.5]``, the negative branch's weight, so negative
  knowledge can be added or subtracted;
- the output ``base(x) + (1 − α)·v_pos + α·v_neg``.

``change2`` starts at zero, so a fresh NAT layer equals its frozen base
exactly, whatever the negative branch holds. Where a projection's output is
narrower than its input (``k_proj``/``v_proj`` under grouped-query attention,
as in SmolLM2, Qwen2 or Llama 3), ``K`` and ``change1`` read the branch
outputs and so take the *output* width, ``Q`` the input width; with LLaMA-7B's
square projections, the released code's case, the two are the same.

The unit's weights are kept in fp32 like PEFT's LoRA weights and the unit
runs on ``x`` cast to them (under autocast its matmuls take the autocast
dtype), as the released code does. A NAT model cannot be merged into plain
weights: α depends on each token's input, so no single weight matrix is the
layer. The folder format is ``nat_config.json`` (base model, both branches,
every setting) and ``nat_model.safetensors`` (the trainable tensors and a copy
of the frozen negative branch, so the folder stands alone).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from curator.errors import CuratorError
from curator.lm.loading import NAT_CANNOT_MERGE
from curator.lm.peft_lora import LoraWeights, tensor_digest
from curator.lm.weights import NAT_FILES
from curator.outputs import write_json

FORMAT = "curator-nat"
MODES = ("nat", "negative", "base")
"""What a NAT layer computes: the whole unit, the base with the negative branch alone, the bare base."""


@dataclass(frozen=True)
class NatSpec:
    """The shape and settings of every NAT layer of a model (``nat_config.json`` holds it whole)."""

    modules: tuple[str, ...]
    r: int
    lora_alpha: float
    lora_dropout: float
    negative_rank: int
    negative_scaling: float
    width: int = 128
    negative_dropout: bool = True

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r


class NatLinear(torch.nn.Module):
    """One adapted projection: the frozen base, both LoRA branches and the integration unit."""

    def __init__(self, base: torch.nn.Linear, spec: NatSpec) -> None:
        super().__init__()
        width, fan_in, fan_out = spec.width, base.in_features, base.out_features
        place = {"device": base.weight.device, "dtype": torch.float32}

        def linear(n_in: int, n_out: int) -> torch.nn.Linear:
            return torch.nn.Linear(n_in, n_out, bias=False, **place)  # kaiming-uniform(√5), the released init

        self.base = base
        self.neg_A, self.neg_B = linear(fan_in, spec.negative_rank), linear(spec.negative_rank, fan_out)
        self.pos_A, self.pos_B = linear(fan_in, spec.r), linear(spec.r, fan_out)
        self.unit_q, self.unit_k = linear(fan_in, width), linear(fan_out, width)
        self.unit_v1, self.unit_v2 = linear(fan_out, width), linear(width, fan_out)
        torch.nn.init.zeros_(self.pos_B.weight)
        torch.nn.init.zeros_(self.unit_v2.weight)
        for frozen in (self.base, self.neg_A, self.neg_B):
            frozen.requires_grad_(False)
        self.dropout = torch.nn.Dropout(spec.lora_dropout) if spec.lora_dropout > 0 else torch.nn.Identity()
        self.negative_dropout = spec.negative_dropout
        self.scaling, self.negative_scaling = spec.scaling, spec.negative_scaling
        self.mode = "nat"

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Every tensor but the base's: what a NAT folder saves for this layer."""
        return {name: p for name, p in self.named_parameters() if not name.startswith("base.")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        if self.mode == "base":
            return result
        h = x.to(self.pos_A.weight.dtype)
        negative = (
            self.neg_B(self.neg_A(self.dropout(h) if self.negative_dropout else h)) * self.negative_scaling
        )
        if self.mode == "negative":
            return result + negative.to(result.dtype)
        base = result.to(h.dtype)
        branches = torch.stack(
            (base + self.pos_B(self.pos_A(self.dropout(h))) * self.scaling, base + negative), -2
        )
        alpha = self.negative_weight(h, branches)
        values = self.unit_v2(F.gelu(self.unit_v1(branches)))
        mixed = (1 - alpha) * values[..., 0, :] + alpha * values[..., 1, :]
        return result + mixed.to(result.dtype)

    def negative_weight(self, h: torch.Tensor, branches: torch.Tensor) -> torch.Tensor:
        """``α = softmax(q·k)[neg] − 0.5`` per token, shaped ``[..., 1]``: the unit's attention over branches."""
        scores = (self.unit_k(branches) @ self.unit_q(h).unsqueeze(-1)).squeeze(-1)  # [..., 2]
        return scores.softmax(-1)[..., 1:] - 0.5

    def alpha(self, x: torch.Tensor) -> torch.Tensor:
        """α for input ``x`` (as in evaluation: no dropout), for inspection."""
        with torch.no_grad():
            h = x.to(self.pos_A.weight.dtype)
            base = self.base(x).to(h.dtype)
            pos = base + self.pos_B(self.pos_A(h)) * self.scaling
            neg = base + self.neg_B(self.neg_A(h)) * self.negative_scaling
            return self.negative_weight(h, torch.stack((pos, neg), -2)).squeeze(-1)


class NatModel(torch.nn.Module):
    """A transformers model with NAT layers, shaped like a PEFT model where callers rely on it.

    ``get_base_model()`` gives the transformers model (with the layers in
    place), ``set_adapter("nat" | "negative")`` and ``disable_adapter()``
    switch what the layers compute, so one copy of the base serves as both
    P and N for ``nce_kl``, as the released code switches ``cur_mode``;
    ``save_pretrained`` writes the NAT folder; other attributes are the
    model's own.
    """

    def __init__(self, model: Any, spec: NatSpec, info: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.spec = spec
        self.info = info

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.generate(*args, **kwargs)

    def get_base_model(self) -> Any:
        return self.model

    def layers(self) -> dict[str, NatLinear]:
        return {name: self.model.get_submodule(name) for name in self.spec.modules}

    def set_adapter(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"NAT mode must be one of {', '.join(MODES)}, not {mode!r}")
        for layer in self.layers().values():
            layer.mode = mode

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        modes = {name: layer.mode for name, layer in self.layers().items()}
        self.set_adapter("base")
        try:
            yield
        finally:
            for name, layer in self.layers().items():
                layer.mode = modes[name]

    def merge_and_unload(self) -> Any:
        raise CuratorError(NAT_CANNOT_MERGE)

    def negative_digest(self) -> str:
        """:meth:`LoraWeights.digest` of the negative branch, to tell whether an adapter is this one."""
        layers = self.layers()
        tensors = {name: layer.neg_A.weight for name, layer in layers.items()}
        tensors |= {f"{name}#B": layer.neg_B.weight for name, layer in layers.items()}
        return tensor_digest(tensors, self.spec.negative_scaling)

    def save_pretrained(self, folder: str | Path) -> None:
        """``nat_config.json`` and ``nat_model.safetensors`` (trainable tensors + frozen negative branch)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"{name}.{key}": t.detach().cpu().contiguous()
            for name, layer in self.layers().items()
            for key, t in layer.adapter_state().items()
        }
        save_file(tensors, folder / NAT_FILES[1], metadata={"format": FORMAT})
        config = {"format": FORMAT, "version": 1, **self.info, **asdict(self.spec)}
        config["modules"] = list(self.spec.modules)
        config["negative"] = dict(config.get("negative", {}), digest=self.negative_digest())
        write_json(folder / NAT_FILES[0], config)


def attach(model: Any, spec: NatSpec, info: dict[str, Any]) -> NatModel:
    """Replace each of ``spec.modules`` in ``model`` by a fresh NAT layer around it."""
    for name in spec.modules:
        parent_name, _, child = name.rpartition(".")
        try:
            base = model.get_submodule(name)
        except AttributeError:
            raise CuratorError(f"NAT: the model has no module '{name}'") from None
        if not isinstance(base, torch.nn.Linear):
            raise CuratorError(f"NAT: '{name}' is a {type(base).__name__}, not a linear projection")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, NatLinear(base, spec))
    return NatModel(model, spec, info)


def select_modules(model: Any, negative: LoraWeights, targets: list[str] | str) -> tuple[str, ...]:
    """The projections NAT adapts: ``all-linear`` takes every one the negative adapter adapts.

    A list names modules as PEFT does (a full name or its last parts, ``q_proj``),
    a string is a regular expression over full names; each chosen module must
    have a negative branch, and the output head is never adapted.
    """
    available = set(negative.modules)
    if targets == "all-linear":
        chosen = sorted(available)
    else:
        names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
        if isinstance(targets, str):
            chosen = [n for n in names if re.fullmatch(targets, n)]
        else:
            chosen = [n for n in names if any(n == t or n.endswith(f".{t}") for t in targets)]
        if not chosen:
            raise CuratorError(f"NAT: target_modules {targets!r} match no linear projection of the model")
        missing = [n for n in chosen if n not in available]
        if missing:
            raise CuratorError(
                f"NAT: the negative adapter {negative.path} has no branch on '{missing[0]}' "
                f"({len(missing)} of the chosen modules); train it on those modules or narrow target_modules"
            )
    head = model.get_output_embeddings()
    if any(model.get_submodule(n) is head for n in chosen):
        raise CuratorError(
            "NAT: the output head cannot be adapted (NAT adapts projections inside the decoder)"
        )
    return tuple(chosen)


def build_nat(model: Any, negative: LoraWeights, spec: NatSpec, info: dict[str, Any]) -> NatModel:
    """A NAT model for training: the base frozen, the negative branch copied in bit for bit and frozen."""
    model.requires_grad_(False)
    nat = attach(model, spec, info)
    with torch.no_grad():
        for name, layer in nat.layers().items():
            for target, source in (
                (layer.neg_A.weight, negative.a[name]),
                (layer.neg_B.weight, negative.b[name]),
            ):
                if target.shape != source.shape:
                    raise CuratorError(
                        f"{negative.path}: '{name}' has shape {tuple(source.shape)}, the model needs "
                        f"{tuple(target.shape)} (an adapter for another base model?)"
                    )
                target.copy_(source)
    return nat


def read_nat_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / NAT_FILES[0]
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CuratorError(f"{path}: cannot read the NAT config ({exc})") from None
    if config.get("format") != FORMAT:
        raise CuratorError(f"{path}: not a NAT config (format {config.get('format')!r})")
    return config


def spec_of(config: dict[str, Any], folder: str | Path) -> NatSpec:
    names = [f.name for f in NatSpec.__dataclass_fields__.values()]
    missing = [n for n in names if n not in config]
    if missing:
        raise CuratorError(f"{Path(folder) / NAT_FILES[0]}: missing '{missing[0]}'")
    values = {n: config[n] for n in names}
    values["modules"] = tuple(values["modules"])
    return NatSpec(**values)


def load_nat(model: Any, folder: str | Path) -> NatModel:
    """``model`` with the NAT layers of ``folder``, in evaluation mode and frozen."""
    config = read_nat_config(folder)
    spec = spec_of(config, folder)
    path = Path(folder) / NAT_FILES[1]
    if not path.is_file():
        raise CuratorError(f"{path}: missing (a NAT folder holds its weights in safetensors)")
    tensors = load_file(path)
    model.requires_grad_(False)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(
        devices=devices
    ):  # the fresh layers are overwritten: leave the caller's RNG alone
        nat = attach(
            model, spec, {k: config[k] for k in ("base_model_name_or_path", "negative") if k in config}
        )
    expected = {
        f"{name}.{key}": t for name, layer in nat.layers().items() for key, t in layer.adapter_state().items()
    }
    if expected.keys() != tensors.keys():
        extra = sorted(expected.keys() ^ tensors.keys())
        raise CuratorError(f"{path}: tensors do not match {NAT_FILES[0]} (e.g. '{extra[0]}')")
    with torch.no_grad():
        for key, target in expected.items():
            if target.shape != tensors[key].shape:
                raise CuratorError(
                    f"{path}: '{key}' has shape {tuple(tensors[key].shape)}, this model needs {tuple(target.shape)}"
                )
            target.copy_(tensors[key])
    nat.requires_grad_(False)
    return nat.eval()
