"""nce_kl (Dust into Gold): beta = tanh(mean KL(N || P)), weight = 0.5 + beta, nothing dropped."""

from __future__ import annotations

import numpy as np
import pytest

from curator import CuratorError
from curator.testing import make_candidates, run_filter
from curator_plugins.nce_kl import NceKL

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def models(tiny_llama, tmp_path_factory):
    from transformers import AutoTokenizer

    from curator.testing.tiny import build_tiny_llama, build_tiny_lora

    root = tmp_path_factory.mktemp("nce")
    other = build_tiny_llama(root / "negative", tokenizer=AutoTokenizer.from_pretrained(tiny_llama), seed=9)
    positive = build_tiny_lora(tiny_llama, root / "positive-lora", seed=1)
    negative = build_tiny_lora(tiny_llama, root / "negative-lora", seed=2)
    return tiny_llama, other, positive, negative


def candidates():
    return make_candidates(
        [["3", "4", "5"], ["7", "8"]],
        rationales=[["1 + 2 = 3.", "Tom has 4 eggs. The answer is 4.", "5 5 5 5 5"], ["7", "Seven and one is 8."]],
    )


def reference_beta(p_path, n_path, table, adapters=(None, None)) -> np.ndarray:
    """tanh of the mean over rationale tokens of KL(N || P), with full logits, one row at a time."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(path, adapter):
        model = AutoModelForCausalLM.from_pretrained(path)
        return (PeftModel.from_pretrained(model, adapter) if adapter else model).eval()

    p, n = load(p_path, adapters[0]), load(n_path, adapters[1])
    tok = AutoTokenizer.from_pretrained(p_path)
    out = []
    for q, r in zip(table.column("question").to_pylist(), table.column("rationale").to_pylist(), strict=True):
        prompt = tok(f"Q: {q}\nA:")["input_ids"]
        ids = torch.tensor([tok(f"Q: {q}\nA: {r}")["input_ids"]])
        with torch.no_grad():
            log_p, log_n = p(ids).logits[0].log_softmax(-1), n(ids).logits[0].log_softmax(-1)
        kl = (log_n.exp() * (log_n - log_p)).sum(-1)[len(prompt) - 1 : -1]
        out.append(np.tanh(kl.mean().item()))
    return np.array(out)


def test_identical_models_give_zero_and_weight_one_half(models):
    base = models[0]
    result = run_filter("nce_kl", candidates(), model=str(base), negative_model=str(base))
    np.testing.assert_allclose(result.column("nce_beta").to_numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(result.column("weight").to_numpy(), 0.5, atol=1e-6)
    assert all(result.column("keep").to_pylist())


def test_two_models_give_positive_beta_and_weight_without_dropping(models):
    base, other, _, _ = models
    table = candidates()
    result = run_filter("nce_kl", table, model=str(base), negative_model=str(other))
    beta = result.column("nce_beta").to_numpy()
    np.testing.assert_allclose(beta, reference_beta(base, other, table), rtol=1e-5)
    assert ((beta > 0) & (beta < 1)).all()
    np.testing.assert_allclose(result.column("weight").to_numpy(), 0.5 + beta, rtol=1e-6)
    assert all(result.column("keep").to_pylist())


def test_positive_and_negative_adapters_on_one_base(models):
    base, _, positive, negative = models
    table = candidates()
    result = run_filter(
        "nce_kl", table, model=str(base), positive_adapter=str(positive), negative_adapter=str(negative)
    )
    expected = reference_beta(base, base, table, adapters=(positive, negative))
    np.testing.assert_allclose(result.column("nce_beta").to_numpy(), expected, rtol=1e-4)
    assert (expected > 0).all()


def test_the_negative_side_must_be_named_once():
    with pytest.raises(CuratorError, match="exactly one of 'negative_adapter'"):
        NceKL.from_options({"model": "m"}, step="nce")
    with pytest.raises(CuratorError, match="exactly one of 'negative_adapter'"):
        NceKL.from_options({"model": "m", "negative_adapter": "a", "negative_model": "b"}, step="nce")
    with pytest.raises(CuratorError, match="'positive_adapter' needs 'negative_adapter'"):
        NceKL.from_options({"model": "m", "negative_model": "b", "positive_adapter": "a"}, step="nce")


def released_beta(p_model, n_model, tokenizer, table) -> np.ndarray:
    """The released distill_NCE.py's β, transcribed: question and solution tokenised apart, every position of
    the loss mask (the last one too), tanh(mean_t Σ (N + 1e-7)(ln(N + 1e-7) − ln P))."""
    out = []
    for q, r in zip(table.column("question").to_pylist(), table.column("rationale").to_pylist(), strict=True):
        ids = torch.tensor([tokenizer(f"Q: {q}\nA:")["input_ids"] + tokenizer(f" {r}")["input_ids"]])
        with torch.no_grad():
            log_p = p_model(ids).logits[0].log_softmax(-1)
            n = n_model(ids).logits[0].softmax(-1) + 1e-7
        kl = (n * (n.log() - log_p)).sum(-1)  # F.kl_div(log P, N + 1e-7), summed over the vocabulary
        out.append(np.tanh(kl.mean().item()))
    return np.array(out)


def test_span_all_is_the_released_beta(models):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, _, positive, negative = models
    table = candidates()
    options = dict(model=str(base), positive_adapter=str(positive), negative_adapter=str(negative))
    result = run_filter("nce_kl", table, span="all", **options)
    p = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), positive).eval()
    n = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), negative).eval()
    expected = released_beta(p, n, AutoTokenizer.from_pretrained(base), table)
    np.testing.assert_allclose(result.column("nce_beta").to_numpy(), expected, rtol=1e-4)
    rationale_only = run_filter("nce_kl", table, **options).column("nce_beta").to_numpy()
    assert np.abs(rationale_only - expected).max() > 1e-3  # the two spans really differ
    with pytest.raises(CuratorError, match="option 'span' must be one of completion, all"):
        NceKL.from_options({"model": "m", "negative_adapter": "a", "span": "question"}, step="nce")


def test_a_nat_folder_as_p_shares_its_base_with_its_own_negative_branch(models, tmp_path):
    from transformers import AutoModelForCausalLM

    from curator.lm.loading import load_causal_lm
    from curator.lm.nat import NatSpec, build_nat, select_modules
    from curator.lm.peft_lora import read_lora

    base, _, _, negative = models
    model, weights = AutoModelForCausalLM.from_pretrained(base), read_lora(negative)
    spec = NatSpec(select_modules(model, weights, "all-linear"), 4, 8.0, 0.0, weights.rank, weights.scaling, 16)
    nat = build_nat(model, weights, spec, {"base_model_name_or_path": str(base)})
    with torch.no_grad():
        for p in nat.parameters():
            if p.requires_grad:
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
    nat.save_pretrained(tmp_path / "nat")
    table = candidates()
    result = run_filter(
        "nce_kl", table, model=str(base), positive_adapter=str(tmp_path / "nat"), negative_adapter=str(negative)
    )
    p_model = load_causal_lm(str(base), adapter=str(tmp_path / "nat"), device="cpu").model
    n_model = load_causal_lm(str(base), adapter=str(negative), device="cpu").model  # PEFT, merged: separately
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    expected = []
    for q, r in zip(table.column("question").to_pylist(), table.column("rationale").to_pylist(), strict=True):
        start = len(tokenizer(f"Q: {q}\nA:")["input_ids"])
        ids = torch.tensor([tokenizer(f"Q: {q}\nA: {r}")["input_ids"]])
        with torch.no_grad():
            log_p, log_n = p_model(ids).logits[0].log_softmax(-1), n_model(ids).logits[0].log_softmax(-1)
        expected.append(np.tanh((log_n.exp() * (log_n - log_p)).sum(-1)[start - 1 : -1].mean().item()))
    np.testing.assert_allclose(result.column("nce_beta").to_numpy(), expected, rtol=1e-4)
    assert (np.array(expected) > 0).all()
