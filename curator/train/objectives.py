"""Training objectives: the pluggable piece of the trainer.

An objective decides four things: which model class it trains
(:meth:`Objective.load_model`, PEFT ``task_type``), which layers are
trained on it (:meth:`Objective.adapt`: fresh LoRA by default, NAT's two
branches for ``nat``), how a curated row becomes a
:class:`~curator.train.data.Sample` (:meth:`Objective.encode`), and the loss
of a micro-batch (:meth:`Objective.loss`). The loop owns everything else
(optimiser, schedule, accumulation, checkpoints, logging).

The loss returns a *sum* over loss units (target tokens for a language
model, sequences for a classifier), and each sample's ``count`` says how many
units it has. The loop divides by the units of the whole optimiser step, so
gradient accumulation and packing never change the result.

To add one, subclass :class:`Objective` in a module of your own and add
``"name": "module:Class"`` to :data:`curator.train.config.OBJECTIVES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pyarrow.compute as pc
import torch

from curator.errors import CuratorError
from curator.formats import format_row
from curator.lm.head import base_model, logit_adjustment
from curator.train.batching import Batch
from curator.train.config import OBJECTIVES, TrainConfig
from curator.train.data import BUILD_OUTPUTS, Sample, TrainingTable, encode_examples
from curator.train.losses import distill_kl, linear_cross_entropy
from curator.train.results import ADAPTER_FILES


class Objective:
    """Base class: override ``encode`` and ``loss``; the rest has causal-LM defaults."""

    task_type: ClassVar[str] = "CAUSAL_LM"
    columns: ClassVar[tuple[str, ...]] = ("question", "rationale")
    packable: ClassVar[bool] = True
    """False for objectives that pool per sequence and so need one sample per row."""
    build_files: ClassVar[tuple[str, ...]] = BUILD_OUTPUTS[:1]
    """What ``--data BUILD_FOLDER`` reads: the curated rows, unless the objective learns from both kinds."""
    saved_files: ClassVar[tuple[str, ...]] = ADAPTER_FILES
    """What :meth:`adapt`'s model writes with ``save_pretrained``."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def load_model(self, path: str, **kwargs: Any) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path, **kwargs)

    def adapt(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model with its trainable layers: fresh LoRA (PEFT), seeded by ``config.seed``."""
        from curator.train.model import with_lora

        return with_lora(model, self.config, self)

    def fingerprint(self) -> dict[str, Any]:
        """What a resume must find unchanged besides the settings (e.g. a frozen branch's content)."""
        return {}

    def setup(self, load: Callable[[str], torch.nn.Module]) -> None:
        """Load what the loss needs besides the trained model; ``load(path)`` gives a frozen model on the device."""

    def encode(self, data: TrainingTable, tokenizer: Any) -> tuple[list[Sample], int]:
        """Samples for the rows of ``data`` and how many were truncated."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Weighted sum of the batch's loss units (fp32 scalar)."""
        raise NotImplementedError


def final_hidden(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Last hidden states from the decoder alone, so the head runs only where there is loss."""
    output = base_model(model).get_decoder()(**batch.model_inputs())
    return output.last_hidden_state


def logits_fn(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Hidden states to the model's own fp32 logits when they are more than its head's output, else None.

    The same adjustment the scorer applies (:mod:`curator.lm.head`), so training
    optimises the logits the filters score.
    """
    adjust = logit_adjustment(model)
    if adjust is None:
        return None
    head = base_model(model).get_output_embeddings()
    return lambda hidden: adjust(head(hidden).float())


class CausalLM(Objective):
    """Shared by the language-model objectives: rows become prompt/completion samples."""

    def values(self, data: TrainingTable) -> dict[str, np.ndarray]:
        """Per-row numbers the loss needs, carried onto each sample."""
        return {}

    def encode(self, data: TrainingTable, tokenizer: Any) -> tuple[list[Sample], int]:
        names = [c for c in ("question", "rationale", "answer") if c in data.table.column_names]
        rows = data.table.select(names).to_pylist()
        examples = [format_row(row, self.config.format, tokenizer) for row in rows]
        return encode_examples(
            examples,
            data.weights,
            tokenizer,
            values=self.values(data),
            max_length=self.config.max_length,
            loss_on_prompt=self.config.loss_on_prompt,
            prompt_special_tokens=self.config.format != "chat",  # the template writes its own BOS
        )

    def selected_hidden(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Hidden states at the positions that carry loss only: prompt and padding never reach the head."""
        return batch.at_targets(final_hidden(model, batch))


class SFT(CausalLM):
    """``Σ_n w_n Σ_t m_nt CE_nt``: weighted next-token cross-entropy on the completion (METHODS §4)."""

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        hidden = self.selected_hidden(model, batch)
        head = base_model(model).get_output_embeddings()
        targets, weights = batch.at_targets(batch.targets), batch.at_targets(batch.token_weights)
        return linear_cross_entropy(hidden, head, targets, weights, logits_fn(model))


class NCE(CausalLM):
    """Dust into Gold's NCE: ``0.5·CE + 0.5·Σ (0.5 + β_n) KL(P ‖ student)`` per token (METHODS §3.7).

    P is the teacher (``--teacher``: a model, or a PEFT or NAT adapter
    on the student's base; Dust into Gold's P is the NAT model). β is the
    row's ``nce_beta`` from the ``nce_kl`` filter.
    As in the official code the CE half is unweighted: the filter's
    ``weight = 0.5 + β`` is what this objective applies to the distillation half.
    """

    columns = ("question", "rationale", "nce_beta")

    def setup(self, load: Callable[[str], torch.nn.Module]) -> None:
        assert self.config.teacher is not None
        self.teacher = load(self.config.teacher)

    def values(self, data: TrainingTable) -> dict[str, np.ndarray]:
        beta = data.table.column("nce_beta")
        if beta.null_count:
            row = int(pc.index(pc.is_null(beta), True).as_py())
            raise CuratorError(f"{data.locate(row)}: 'nce_beta' is null (run the nce_kl filter first)")
        return {"nce_beta": pc.cast(beta, "float32").to_numpy()}

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        hidden = self.selected_hidden(model, batch)
        targets = batch.at_targets(batch.targets)
        student = base_model(model)
        head = student.get_output_embeddings()
        ce = linear_cross_entropy(
            hidden, head, targets, torch.ones_like(targets, dtype=torch.float32), logits_fn(model)
        )
        with torch.no_grad():
            teacher_hidden = self.selected_hidden(self.teacher, batch)
        beta = (0.5 + batch.values["nce_beta"])[batch.at_targets(batch.sample_index)]
        teacher_head = base_model(self.teacher).get_output_embeddings()
        kd = distill_kl(
            hidden,
            teacher_hidden,
            logits_fn(model) or head,
            logits_fn(self.teacher) or teacher_head,
            beta,
            vocab=head.weight.shape[0],
        )
        return 0.5 * ce + 0.5 * kd


def load_objective(config: TrainConfig) -> Objective:
    """The objective ``config.objective`` names, imported only now (it imports torch)."""
    module, _, name = OBJECTIVES[config.objective].partition(":")
    return getattr(importlib.import_module(module), name)(config)
