"""Per-sample KL between two models, and between two adapters on one base."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from curator.lm.kl import mean_kl  # noqa: E402
from curator.lm.loading import load_adapter_pair, load_causal_lm  # noqa: E402
from curator.lm.scoring import encode  # noqa: E402
from curator.testing.tiny import arithmetic_corpus, build_tiny_llama, build_tiny_lora  # noqa: E402


@pytest.fixture(scope="module")
def models(tiny_llama, tmp_path_factory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("kl")
    other = build_tiny_llama(root / "other", tokenizer=AutoTokenizer.from_pretrained(tiny_llama), seed=7)
    adapters = [build_tiny_lora(tiny_llama, root / f"lora{s}", seed=s) for s in (1, 2)]
    return tiny_llama, other, adapters


def samples(tokenizer, count=12):
    lines = arithmetic_corpus(count, seed=4)
    prompts = [line.split("\nA:")[0] + "\nA:" for line in lines]
    completions = [" " + line.split("\nA:")[1].strip() * (1 + i % 4) for i, line in enumerate(lines)]
    return encode(tokenizer, prompts, completions)


def reference_kl(n_model, p_model, encoded) -> np.ndarray:
    """Mean over the span of KL(N || P), one unpadded sample at a time with full logits."""
    out = []
    for ids, start in zip(encoded.ids, encoded.starts, strict=True):
        x = torch.tensor([ids])
        with torch.no_grad():
            log_n = n_model(x).logits[0].float().log_softmax(-1)
            log_p = p_model(x).logits[0].float().log_softmax(-1)
        kl = (log_n.exp() * (log_n - log_p)).sum(-1)[start - 1 : len(ids) - 1]
        out.append(kl.mean().item())
    return np.array(out)


def test_kl_is_zero_for_identical_models(models):
    base, _, _ = models
    a = load_causal_lm(str(base), device="cpu")
    b = load_causal_lm(str(base), device="cpu")
    np.testing.assert_allclose(mean_kl(a, b, samples(a.tokenizer)), 0.0, atol=1e-6)


def test_kl_between_two_models_matches_the_full_logits_reference(models):
    base, other, _ = models
    p = load_causal_lm(str(base), device="cpu")
    n = load_causal_lm(str(other), device="cpu")
    encoded = samples(p.tokenizer)
    got = mean_kl(n, p, encoded, token_budget=64, logit_budget=1000)
    assert (got > 0).all()
    np.testing.assert_allclose(got, reference_kl(n.model, p.model, encoded), rtol=1e-5, atol=1e-6)


def test_two_adapters_share_one_base_and_match_separately_merged_models(models):
    base, _, (first, second) = models
    p, n = load_adapter_pair(str(base), str(first), str(second), device="cpu")
    assert p.model is n.model
    encoded = samples(p.tokenizer)
    got = mean_kl(n, p, encoded)
    merged_p = load_causal_lm(str(base), adapter=str(first), device="cpu")
    merged_n = load_causal_lm(str(base), adapter=str(second), device="cpu")
    np.testing.assert_allclose(got, mean_kl(merged_n, merged_p, encoded), rtol=1e-4, atol=1e-6)
    assert (got > 0).all()


def test_the_bare_base_can_stand_for_one_side(models):
    base, _, (first, _) = models
    bare, adapted = load_adapter_pair(str(base), None, str(first), device="cpu")
    encoded = samples(bare.tokenizer)
    plain = load_causal_lm(str(base), device="cpu")
    merged = load_causal_lm(str(base), adapter=str(first), device="cpu")
    np.testing.assert_allclose(mean_kl(adapted, bare, encoded), mean_kl(merged, plain, encoded), rtol=1e-4, atol=1e-6)


def test_models_with_different_vocabularies_are_a_one_line_error(models, tmp_path):
    from curator import CuratorError
    from curator.testing.tiny import train_tokenizer

    base, _, _ = models
    wide = build_tiny_llama(tmp_path / "wide", tokenizer=train_tokenizer(arithmetic_corpus(), 700))
    p, n = load_causal_lm(str(base), device="cpu"), load_causal_lm(str(wide), device="cpu")
    assert len(n.tokenizer) > len(p.tokenizer)
    with pytest.raises(CuratorError, match=r"^nce_kl: the two models' vocabularies differ \(\d+ and \d+ tokens\)"):
        mean_kl(n, p, samples(p.tokenizer))


def test_an_adapter_on_the_output_head_is_a_one_line_error(models, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from curator import CuratorError

    base, _, (first, _) = models
    config = LoraConfig(r=2, target_modules=["lm_head"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), config).save_pretrained(str(tmp_path / "head"))
    p, n = load_adapter_pair(str(base), str(first), str(tmp_path / "head"), device="cpu")
    with pytest.raises(CuratorError, match="^nce_kl: an adapter that changes the output head is not supported"):
        mean_kl(n, p, samples(p.tokenizer))
