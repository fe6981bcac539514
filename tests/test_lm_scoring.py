"""The scoring layer against a one-sample-at-a-time reference with full logits."""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from curator.lm.loading import load_causal_lm  # noqa: E402
from curator.lm.scoring import (  # noqa: E402
    encode,
    length_batches,
    next_token_logprobs,
    score_encoded,
    score_texts,
)
from curator.testing.tiny import arithmetic_corpus  # noqa: E402


@pytest.fixture(scope="module")
def lm(tiny_llama):
    return load_causal_lm(str(tiny_llama), device="cpu")


def mixed_samples(count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Prompts and completions from no word to a few hundred tokens, in random order."""
    rng = random.Random(seed)
    lines = arithmetic_corpus(200, seed=seed)
    prompts, completions = [], []
    for _ in range(count):
        question, answer = rng.choice(lines).split("\nA:")
        words = (answer.strip() + " ") * 20
        prompts.append(question + "\nA:")
        completions.append(" " + " ".join(words.split()[: rng.randint(0, 150)]))
    return prompts, completions


def reference(lm, prompt: str, completion: str, span: str) -> tuple[float, int]:
    """Sum of log-probabilities from one unpadded forward pass with the model's own full logits."""
    full = lm.tokenizer(prompt + completion)["input_ids"]
    start = 1 if span == "all" else len(lm.tokenizer(prompt)["input_ids"])
    with torch.no_grad():
        log_probs = lm.model(torch.tensor([full])).logits[0].float().log_softmax(-1)
    picked = [log_probs[t - 1, full[t]].item() for t in range(start, len(full))]
    return float(np.sum(picked)), len(picked)


@pytest.mark.parametrize("span", ["completion", "all"])
def test_batched_scores_equal_one_at_a_time(lm, span):
    prompts, completions = mixed_samples(40)
    scored = score_texts(lm, prompts, completions, span=span, token_budget=300)
    expected = [reference(lm, p, c, span) for p, c in zip(prompts, completions, strict=True)]
    np.testing.assert_allclose(scored.logprob, [e[0] for e in expected], rtol=1e-5, atol=1e-5)
    assert scored.n_tokens.tolist() == [e[1] for e in expected]
    np.testing.assert_allclose(scored.mean_nll, [-lp / n for lp, n in expected], rtol=1e-5, atol=1e-5)
    assert len(set(scored.n_tokens.tolist())) > 10  # the lengths really were mixed


def test_results_come_back_in_input_order_whatever_the_budget(lm):
    prompts, completions = mixed_samples(30, seed=1)
    base = score_texts(lm, prompts, completions, token_budget=1)
    for budget in (64, 500, 100_000):
        again = score_texts(lm, prompts, completions, token_budget=budget)
        np.testing.assert_allclose(again.logprob, base.logprob, rtol=1e-5, atol=1e-5)
    order = list(reversed(range(30)))
    reversed_scores = score_texts(lm, [prompts[i] for i in order], [completions[i] for i in order])
    np.testing.assert_allclose(reversed_scores.logprob, base.logprob[order], rtol=1e-5, atol=1e-5)


def test_length_batches_sort_and_respect_the_budget():
    lengths = [5, 40, 3, 40, 17, 90, 1, 12]
    batches = length_batches(lengths, 80)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) == 1 or width * len(batch) <= 80


def test_span_boundaries_and_empty_completions(lm):
    tok = lm.tokenizer
    prompts = ["Q: Tom has 3 apples.\nA:", "Q: Tom has 3 apples.\nA:"]
    encoded = encode(tok, prompts, [" He has 3.", ""])
    full = tok(prompts[0] + " He has 3.")["input_ids"]
    assert encoded.starts[0] == len(tok(prompts[0])["input_ids"])
    assert encoded.ids[0] == full
    scored = score_encoded(lm, encoded)
    assert scored.n_tokens.tolist() == [len(full) - encoded.starts[0], 0]
    assert np.isnan(scored.mean_nll[1]) and scored.logprob[1] == 0.0


def test_truncation_warns_and_cuts_at_max_length(lm):
    prompts, completions = mixed_samples(12, seed=2)
    with pytest.warns(UserWarning, match=r"of 12 samples truncated to 16 tokens"):
        scored = score_texts(lm, prompts, completions, span="all", max_length=16)
    lengths = [len(lm.tokenizer(p + c)["input_ids"]) for p, c in zip(prompts, completions, strict=True)]
    assert scored.truncated.tolist() == [n > 16 for n in lengths]
    assert scored.n_tokens.tolist() == [min(n, 16) - 1 for n in lengths]


def test_next_token_logprobs_match_full_logits(lm):
    sequences = [lm.tokenizer(t)["input_ids"][: 5 + 7 * i] for i, t in enumerate(arithmetic_corpus(6))]
    candidates = [4, 17, 99, 250]
    got = next_token_logprobs(lm, sequences, candidates, last=2, token_budget=50)
    for row, ids in enumerate(sequences):
        with torch.no_grad():
            log_probs = lm.model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
        np.testing.assert_allclose(got[row], log_probs[-2:, candidates].numpy(), rtol=1e-5, atol=1e-5)
