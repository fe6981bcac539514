"""The loss side: fused cross-entropy, packing without cross-talk, padding, weights, NCE."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from curator.formats import natural
from curator.testing.tiny import arithmetic_corpus, tiny_llama_config, train_tokenizer
from curator.train import losses
from curator.train.batching import collate
from curator.train.config import TrainConfig
from curator.train.data import encode_examples
from curator.train.model import with_lora
from curator.train.objectives import NCE, SFT

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(arithmetic_corpus(200))


def config(**overrides) -> TrainConfig:
    return TrainConfig(data="-", model="-", output="-", lora_dropout=0.0, **overrides)


@pytest.fixture(scope="module")
def model(tokenizer):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(tiny_llama_config(len(tokenizer), initializer_range=0.2))
    lora = with_lora(base, config(), SFT(config()))
    with torch.no_grad():  # LoRA B starts at zero; make the adapter matter for the gradient checks
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    return lora.eval()


@pytest.fixture(scope="module")
def samples(tokenizer):
    lines = arithmetic_corpus(6, seed=3)
    examples = [
        natural(line.split("\nA: ")[0][3:], line.split("\nA: ")[1] + " extra" * i)
        for i, line in enumerate(lines)
    ]
    weights = np.array([1.0, 0.5, 2.0, 1.0, 1.5, 1.0])
    encoded, _ = encode_examples(examples, weights, tokenizer, max_length=128, loss_on_prompt=False)
    return encoded


def loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = SFT(config()).loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("head_needs_grad", [False, True])
def test_fused_cross_entropy_matches_reference(monkeypatch, head_needs_grad):
    monkeypatch.setattr(losses, "LOGIT_BUDGET", 40 * 16)  # 16-token chunks: several per call
    torch.manual_seed(0)
    hidden = torch.randn(50, 8, requires_grad=True)
    head = torch.nn.Linear(8, 40, bias=False)
    head.weight.requires_grad_(head_needs_grad)
    targets = torch.randint(0, 40, (50,))
    weights = torch.rand(50) * 2

    fused = losses.linear_cross_entropy(hidden, head, targets, weights)
    fused.backward()
    fused_grads = hidden.grad.clone(), None if head.weight.grad is None else head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None

    reference = (F.cross_entropy(head(hidden), targets, reduction="none") * weights).sum()
    reference.backward()
    torch.testing.assert_close(fused, reference)
    torch.testing.assert_close(fused_grads[0], hidden.grad)
    if head_needs_grad:
        torch.testing.assert_close(fused_grads[1], head.weight.grad)

    hidden.grad = None
    generic = losses.linear_cross_entropy(hidden, head, targets, weights, logits_fn=head)  # checkpointed path
    generic.backward()
    torch.testing.assert_close(generic, reference)
    torch.testing.assert_close(hidden.grad, fused_grads[0])


def test_packed_and_unpacked_batches_give_the_same_loss(model, samples):
    packed, packed_grads = loss_and_grads(model, collate(samples, packed=True, pad_id=0))
    padded, padded_grads = loss_and_grads(model, collate(samples, packed=False, pad_id=0))
    # Each sample on its own: any attention across a packing seam would show up here.
    alone = sum(loss_and_grads(model, collate([s], packed=False, pad_id=0))[0] for s in samples)
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)
    assert packed_grads.keys() == padded_grads.keys() and packed_grads
    for name in packed_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], rtol=1e-4, atol=1e-6)


def test_padding_tokens_change_nothing(model, samples):
    batch = collate(samples, packed=False, pad_id=0)
    other = copy.deepcopy(batch)
    pad = other.attention_mask == 0
    other.input_ids[pad] = torch.randint(5, 100, (int(pad.sum()),))
    torch.testing.assert_close(loss_and_grads(model, batch)[0], loss_and_grads(model, other)[0])


def test_weight_two_equals_the_row_counted_twice(model, samples):
    first, rest = samples[0], samples[1:]
    doubled = copy.deepcopy(first)
    doubled.weight = 2.0 * first.weight
    with_weight, grads_weight = loss_and_grads(model, collate([doubled, *rest], packed=True, pad_id=0))
    twice, grads_twice = loss_and_grads(model, collate([first, first, *rest], packed=True, pad_id=0))
    torch.testing.assert_close(with_weight, twice, rtol=1e-5, atol=1e-5)
    for name in grads_weight:
        # fp32 sums in another order: tolerance relative to the gradient's own scale
        scale = float(grads_twice[name].abs().max())
        torch.testing.assert_close(grads_weight[name], grads_twice[name], rtol=1e-4, atol=1e-5 * scale)


def test_nce_mixes_ce_with_beta_weighted_distillation(model, samples):
    batch = collate(samples, packed=True, pad_id=0)
    unit = copy.deepcopy(batch)
    unit.token_weights = (batch.token_weights > 0).float()
    ce = SFT(config()).loss(model, unit).detach()

    def nce_loss(teacher, beta):
        objective = NCE(config(objective="nce", teacher="-"))
        objective.teacher = teacher
        batch.values = {"nce_beta": torch.full((len(samples),), beta)}
        return objective.loss(model, batch).detach()

    # A teacher identical to the student: KL 0, half the (unweighted) CE remains.
    torch.testing.assert_close(nce_loss(model, 0.3), 0.5 * ce)
    teacher = copy.deepcopy(model)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    low, high = nce_loss(teacher, 0.0) - 0.5 * ce, nce_loss(teacher, 1.5) - 0.5 * ce
    assert low > 0
    torch.testing.assert_close(high / low, torch.tensor(4.0))  # (0.5 + 1.5) / (0.5 + 0.0)
