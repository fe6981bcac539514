"""Scoring and training see the model's own logits on architectures that change them after the head."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from curator.formats import natural  # noqa: E402
from curator.lm.head import logit_adjustment  # noqa: E402
from curator.lm.loading import load_causal_lm  # noqa: E402
from curator.lm.scoring import score_texts  # noqa: E402
from curator.testing.tiny import arithmetic_corpus, train_tokenizer  # noqa: E402
from curator.train.batching import collate  # noqa: E402
from curator.train.config import TrainConfig  # noqa: E402
from curator.train.data import IGNORE, encode_examples  # noqa: E402
from curator.train.objectives import SFT  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)

# Each with its adjustment far from neutral, so leaving it out would show.
ARCHITECTURES = {
    "cohere": ("CohereConfig", "CohereForCausalLM", {"logit_scale": 4.0}),
    "granite": ("GraniteConfig", "GraniteForCausalLM", {"logits_scaling": 0.25}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"final_logit_softcapping": 0.5, "head_dim": 8}),
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),  # nothing after the head
}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(arithmetic_corpus(200))


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def saved(request, tokenizer, tmp_path_factory):
    config_name, model_name, extra = ARCHITECTURES[request.param]
    config = getattr(transformers, config_name)(vocab_size=len(tokenizer), initializer_range=0.2, **SIZES, **extra)
    torch.manual_seed(0)
    model = getattr(transformers, model_name)(config)
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return request.param, path


def texts(count: int) -> tuple[list[str], list[str]]:
    lines = arithmetic_corpus(count, seed=5)
    return [line.split("\nA: ")[0][3:] for line in lines], [line.split("\nA: ")[1] for line in lines]


def test_the_adjustment_is_found_exactly_where_the_model_has_one(saved):
    name, path = saved
    lm = load_causal_lm(str(path), device="cpu")
    assert (logit_adjustment(lm.model) is None) == (name == "llama")


def test_scores_use_the_models_own_logits(saved):
    _, path = saved
    lm = load_causal_lm(str(path), device="cpu")
    questions, rationales = texts(6)
    prompts = [natural(q).prompt for q in questions]
    completions = [natural(q, r).completion for q, r in zip(questions, rationales, strict=True)]
    scored = score_texts(lm, prompts, completions, span="all", token_budget=64)
    expected = []
    for prompt, completion in zip(prompts, completions, strict=True):
        ids = lm.tokenizer(prompt + completion)["input_ids"]
        with torch.no_grad():
            log_probs = lm.model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
        expected.append(sum(log_probs[t - 1, ids[t]].item() for t in range(1, len(ids))))
    np.testing.assert_allclose(scored.logprob, expected, rtol=1e-5, atol=1e-4)


def test_training_loss_is_the_cross_entropy_of_the_models_own_logits(saved, tokenizer):
    _, path = saved
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    questions, rationales = texts(4)
    examples = [natural(q, r) for q, r in zip(questions, rationales, strict=True)]
    weights = np.array([1.0, 0.5, 2.0, 1.5])
    samples, _ = encode_examples(examples, weights, tokenizer, max_length=128, loss_on_prompt=False)
    batch = collate(samples, packed=False, pad_id=0)
    config = TrainConfig(data="-", model="-", output="-")
    loss = SFT(config).loss(model, batch)
    with torch.no_grad():
        logits = model(**batch.model_inputs()).logits.float()
    chosen = batch.targets != IGNORE
    token_ce = torch.nn.functional.cross_entropy(logits[chosen], batch.targets[chosen], reduction="none")
    torch.testing.assert_close(loss.detach(), (token_ce * batch.token_weights[chosen]).sum(), rtol=1e-5, atol=1e-4)
