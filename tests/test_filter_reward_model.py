"""reward_model: a sequence classifier's logit per (question, rationale), top k% or a threshold."""

from __future__ import annotations

import numpy as np
import pytest

from curator.lm.pairs import encode_pairs
from curator.testing import make_candidates, manifest_of, run_filter

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    from curator.testing.tiny import build_tiny_classifier

    return build_tiny_classifier(tmp_path_factory.mktemp("rm"), seed=2)


def candidates():
    rng = np.random.default_rng(3)
    rationales = [[" ".join(["step"] * int(rng.integers(1, 60))) + f" The answer is {a}." for a in range(5)]
                  for _ in range(4)]
    return make_candidates([[str(a) for a in range(5)]] * 4, rationales=rationales)


def unpadded_rewards(path, table) -> np.ndarray:
    """One sample at a time, no padding: the logit at the last token, as the model computes it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    out = []
    for q, r in zip(table.column("question").to_pylist(), table.column("rationale").to_pylist(), strict=True):
        with torch.no_grad():
            out.append(model(torch.tensor([tokenizer(q, r)["input_ids"]])).logits[0, 0].item())
    return np.array(out)


def test_reward_is_the_classifier_logit_and_the_top_k_percent_is_kept(reward_model):
    table = candidates()
    result = run_filter("reward_model", table, model=str(reward_model), keep_percent=40, batch_tokens=120)
    rewards = result.column("reward").to_numpy()
    np.testing.assert_allclose(rewards, unpadded_rewards(reward_model, table), rtol=1e-5, atol=1e-6)
    keep = result.column("keep").to_numpy(zero_copy_only=False)
    assert keep.sum() == 8  # 40 % of 20
    assert rewards[keep].min() >= rewards[~keep].max()


def test_min_reward_is_a_fixed_threshold(reward_model):
    table = candidates()
    rewards = unpadded_rewards(reward_model, table)
    cut = float(np.median(rewards))
    result = run_filter("reward_model", table, model=str(reward_model), min_reward=cut)
    assert result.column("keep").to_pylist() == (rewards >= cut).tolist()
    assert manifest_of(result)["steps"][0]["stats"]["cut"] == cut


def test_chat_template_is_used_when_the_tokenizer_has_one(reward_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(reward_model)
    tokenizer.chat_template = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    ids = encode_pairs(tokenizer, ["What is 2 + 2?"], ["2 + 2 = 4."], max_length=512)
    expected = tokenizer("<s>user: What is 2 + 2?\n<s>assistant: 2 + 2 = 4.\n", add_special_tokens=False)
    assert ids == [expected["input_ids"]]


def test_long_pairs_are_truncated_with_a_warning(reward_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(reward_model)
    with pytest.warns(UserWarning, match="1 of 2 samples truncated to 32 tokens"):
        ids = encode_pairs(tokenizer, ["q", "q"], ["word " * 100, "short"], max_length=32)
    assert len(ids[0]) == 32 and ids[1] == tokenizer("q", "short")["input_ids"]
