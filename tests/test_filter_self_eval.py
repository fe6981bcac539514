"""self_eval: the expected rating equals a brute-force reading of the model, top k% kept."""

from __future__ import annotations

import numpy as np
import pytest

from curator import CuratorError
from curator.testing import make_candidates, run_filter
from curator_plugins.self_eval import PROMPT, RatingTokens, SelfEval, parse_rating

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def split_digit_llama(tmp_path_factory):
    from curator.testing.tiny import arithmetic_corpus, build_tiny_llama, train_tokenizer

    tokenizer = train_tokenizer(arithmetic_corpus(), split_digits=True)
    return build_tiny_llama(tmp_path_factory.mktemp("split-digits"), tokenizer=tokenizer, seed=5)


def candidates(groups: int = 3, per_group: int = 4):
    rng = np.random.default_rng(1)
    rationales = [[f"Tom has {a} eggs and gets {b}, so {a} + {b} = {a + b}." for a, b in rng.integers(1, 99, (per_group, 2))]
                  for _ in range(groups)]
    return make_candidates([["1"] * per_group] * groups, rationales=rationales)


def brute_force_rating(model, tokenizer, question: str, rationale: str) -> float:
    """Expected rating from the probability of each full ``Score: s`` continuation, one forward each."""
    prompt = tokenizer(PROMPT.format(question=question, rationale=rationale))["input_ids"]
    base = len(tokenizer("Score:", add_special_tokens=False)["input_ids"])
    paths = [tokenizer(f"Score: {s}", add_special_tokens=False)["input_ids"][base:] for s in range(11)]
    probs = []
    for path in paths:
        with torch.no_grad():
            log_probs = model(torch.tensor([prompt + path])).logits[0].log_softmax(-1)
        probs.append(np.exp(sum(log_probs[len(prompt) - 1 + k, tok].item() for k, tok in enumerate(path))))
    exact = np.array(probs)
    for s, path in enumerate(paths):  # "1" followed by "0" is the rating 10, not 1
        exact[s] -= sum(probs[t] for t, other in enumerate(paths) if len(other) > len(path) and other[: len(path)] == path)
    return float(exact @ np.arange(11) / exact.sum())


@pytest.mark.parametrize("which", ["merged", "split"])
def test_expected_rating_matches_brute_force_and_keeps_the_top(which, tiny_llama, split_digit_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_llama if which == "merged" else split_digit_llama
    table = candidates()
    result = run_filter("self_eval", table, model=str(path), keep_percent=25, batch_tokens=300)
    got = result.column("self_eval").to_numpy()
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    expected = [brute_force_rating(model, tokenizer, q, r) for q, r in
                zip(table.column("question").to_pylist(), table.column("rationale").to_pylist(), strict=True)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert ((got >= 0) & (got <= 10)).all() and np.ptp(got) > 0
    keep = result.column("keep").to_numpy(zero_copy_only=False)
    assert keep.sum() == 3  # 25 % of 12
    assert got[keep].min() >= got[~keep].max()


def test_digit_split_vocabularies_spell_ten_as_one_then_zero(split_digit_llama):
    from transformers import AutoTokenizer

    ratings = RatingTokens.of(AutoTokenizer.from_pretrained(split_digit_llama))
    assert len(ratings.shared) == 1  # the lone space piece
    assert ratings.paths[10] == ratings.paths[1] + ratings.paths[0]
    assert ratings.chained and ratings.contexts == [(), ratings.paths[1]]


def test_generated_mode_parses_the_first_number(tiny_llama):
    result = run_filter("self_eval", candidates(2, 3), model=str(tiny_llama), mode="generate", max_new_tokens=3)
    values = result.column("self_eval").to_numpy()
    assert values.shape == (6,) and ((values >= 0) & (values <= 10)).all()
    assert parse_rating(" 7\nThe answer") == 7.0
    assert parse_rating(" 8.5/10") == 8.5
    assert parse_rating(" 12") == 10.0
    assert parse_rating(" none") == 0.0


def test_long_prompts_are_cut_from_the_left_with_a_warning(tiny_llama):
    table = make_candidates([["1"]], rationales=[["word " * 400]])
    with pytest.warns(UserWarning, match="truncated to 64 tokens"):
        result = run_filter("self_eval", table, model=str(tiny_llama), max_length=64)
    assert 0 <= result.column("self_eval")[0].as_py() <= 10


def test_prompt_options_are_checked():
    with pytest.raises(CuratorError, match="must contain"):
        SelfEval.from_options({"model": "m", "prompt": "Rate {question}. Score:"}, step="se")
    with pytest.raises(CuratorError, match="must end with 'Score:'"):
        SelfEval.from_options({"model": "m", "prompt": "{question} {rationale} Rating:"}, step="se")
    SelfEval.from_options({"model": "m", "prompt": "{question} {rationale} Rating:", "mode": "generate"}, step="se")
