"""Recipe options shared by the model-backed filters, and loading through the build's cache.

A filter that subclasses :class:`ModelOptions` (before :class:`curator.Filter`)
gets the options ``model``, ``dtype``, ``trust_remote_code``, ``revision`` and
``batch_tokens``, and loads its models through ``context.models``, keyed by
everything that changes the loaded weights, so two filters naming the same
model share one copy. This module imports no torch: plugins import it at
registration time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from curator.errors import CuratorError
from curator.filter import runtime_option
from curator.lm.loading import (
    DTYPES,
    LoadedModel,
    load_adapter_pair,
    load_causal_lm,
    load_sequence_classifier,
    require_lm,
)

if TYPE_CHECKING:
    from curator.filter import FilterContext


@dataclass(kw_only=True)
class ModelOptions:
    """``model``: a folder (relative to the recipe) or a hub name; the rest tune loading."""

    name: ClassVar[str]
    uses_model: ClassVar[bool] = True

    model: str
    dtype: str | None = None
    trust_remote_code: bool = False
    revision: str | None = None
    batch_tokens: int | None = runtime_option(None)

    def check_model_options(self, step: str) -> None:
        """Reject a dtype or batch size that loading would fail on later, naming the step."""
        if self.dtype is not None and self.dtype not in DTYPES:
            raise CuratorError(
                f"filter step '{step}': option 'dtype' must be one of {', '.join(DTYPES)}, got {self.dtype!r}"
            )
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise CuratorError(f"filter step '{step}': option 'batch_tokens' must be positive, got {self.batch_tokens}")

    def causal_lm(self, context: FilterContext, name: str | None = None, adapter: str | None = None) -> LoadedModel:
        """The causal LM ``name`` (default: ``model``) with ``adapter`` merged, shared per build."""
        require_lm(f"filter '{self.name}'")
        path, adapter = locate(context, name or self.model), _maybe_locate(context, adapter)
        return context.models.get(
            ("causal_lm", path, adapter, *self._loading_key(context)),
            lambda: load_causal_lm(path, adapter=adapter, **self._loading_kwargs(context)),
        )

    def adapter_pair(
        self, context: FilterContext, first: str | None, second: str | None
    ) -> tuple[LoadedModel, LoadedModel]:
        """Two adapters (None: the bare base) on one copy of ``model``, shared per build."""
        require_lm(f"filter '{self.name}'")
        path = locate(context, self.model)
        first, second = _maybe_locate(context, first), _maybe_locate(context, second)
        return context.models.get(
            ("adapter_pair", path, first, second, *self._loading_key(context)),
            lambda: load_adapter_pair(path, first, second, **self._loading_kwargs(context)),
        )

    def sequence_classifier(self, context: FilterContext) -> LoadedModel:
        """The sequence-classification model ``model``, shared per build."""
        require_lm(f"filter '{self.name}'")
        path = locate(context, self.model)
        return context.models.get(
            ("sequence_classifier", path, *self._loading_key(context)),
            lambda: load_sequence_classifier(path, **self._loading_kwargs(context)),
        )

    def _loading_kwargs(self, context: FilterContext) -> dict[str, Any]:
        return {
            "device": context.device,
            "dtype": self.dtype,
            "trust_remote_code": self.trust_remote_code,
            "revision": self.revision,
        }

    def _loading_key(self, context: FilterContext) -> tuple[Any, ...]:
        return tuple(self._loading_kwargs(context).values())


def locate(context: FilterContext, name: str) -> str:
    """A folder relative to the recipe when one exists there, otherwise a hub name.

    A name written as a path (``./x``, ``../x``, ``/x``, ``~/x``) must exist:
    sending it to the hub would only fail later with a less useful message.
    """
    path = context.resolve(name)
    if path.exists():
        return str(path)
    if name.startswith((".", "/", "~")):
        raise CuratorError(f"{path}: no such model folder")
    return name


def _maybe_locate(context: FilterContext, name: str | None) -> str | None:
    return None if name is None else locate(context, name)
