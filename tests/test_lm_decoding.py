"""The decoding loop: the same tokens as a cache-free argmax, whatever the batch, the prefix or the model's config."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import curator.lm.memory as memory  # noqa: E402
from curator.lm.decoding import Sampling, _Runner, decode, stop_token_ids  # noqa: E402
from curator.lm.loading import LoadedModel, load_causal_lm  # noqa: E402

PREFIX = "Q: Tom has 3 apples and buys 4 more. How many apples does Tom have?\nA: 3 + 4 = 7. The answer is 7.\n\n"
QUESTIONS = ["Q: Kai has 9 eggs.\nA:", "Q: Lena has 12 books and gives away 5 of them. How many are left?\nA:"]


@pytest.fixture(scope="module")
def lm(tiny_llama):
    loaded = load_causal_lm(str(tiny_llama), device="cpu")
    # A generation config that would change every token if it were applied.
    config = loaded.model.generation_config
    config.do_sample, config.temperature, config.top_k, config.repetition_penalty = True, 0.3, 3, 5.0
    return loaded


def reference(lm, prompt: list[int], steps: int) -> tuple[list[int], float]:
    """Greedy tokens and their summed log-probability from full forward passes, no cache, no config."""
    ids, total = list(prompt), 0.0
    with torch.inference_mode():
        for _ in range(steps):
            logits = lm.model(torch.tensor([ids])).logits[0, -1].float()
            token = int(logits.argmax())
            total += float(torch.log_softmax(logits, -1)[token])
            ids.append(token)
    return ids[len(prompt) :], total


def test_greedy_equals_a_cache_free_argmax_with_a_shared_prefix_and_samples(lm):
    prompts = [lm.tokenizer(PREFIX + q)["input_ids"] for q in QUESTIONS]
    never = {-1}  # no EOS, so every row runs the full length
    decoded = decode(lm, prompts, Sampling(max_new_tokens=12), samples=[2, 3], stop_ids=never)
    assert [len(group) for group in decoded] == [2, 3]
    for prompt, group in zip(prompts, decoded, strict=True):
        tokens, logprob = reference(lm, prompt, 12)
        for row in group:
            assert row.text == lm.tokenizer.decode(tokens, skip_special_tokens=True)
            assert row.n_tokens == 12 and row.finish_reason == "length"
            assert row.logprob == pytest.approx(logprob, abs=1e-3)


def test_rows_that_stop_early_leave_the_batch_without_changing_the_others(lm):
    prompts = [lm.tokenizer(PREFIX + q)["input_ids"] for q in [*QUESTIONS, "Q: Ali has 1 marble.\nA:"]]
    sampling = Sampling(max_new_tokens=16, stop=(" ",))  # most rows stop within a few tokens, some later
    together = decode(lm, prompts, sampling, stop_ids=set())
    alone = [decode(lm, [p], sampling, stop_ids=set())[0] for p in prompts]
    assert [g[0] for g in together] == [g[0] for g in alone]
    assert any(g[0].finish_reason == "stop" for g in together)


def test_sampling_is_seeded_and_top_p_near_zero_is_greedy(lm):
    prompt = [lm.tokenizer(PREFIX + QUESTIONS[0])["input_ids"]]
    hot = Sampling(max_new_tokens=10, temperature=1.5, seed=3)
    first, again = (decode(lm, prompt, hot, samples=[4], stop_ids=set())[0] for _ in range(2))
    assert first == again and len({d.text for d in first}) > 1
    narrow = decode(lm, prompt, Sampling(max_new_tokens=10, temperature=1.5, top_p=1e-9, seed=3), stop_ids=set())
    greedy = decode(lm, prompt, Sampling(max_new_tokens=10), stop_ids=set())
    assert narrow[0][0].text == greedy[0][0].text


def test_a_tokenizer_without_pad_token_still_batches(lm):
    tokenizer = copy.deepcopy(lm.tokenizer)
    tokenizer.pad_token = None
    lm = LoadedModel(lm.model, tokenizer, "cpu")
    assert tokenizer.pad_token_id is None
    prompts = [lm.tokenizer(q)["input_ids"] for q in QUESTIONS]  # no shared prefix: plain left padding
    together = decode(lm, prompts, Sampling(max_new_tokens=6), stop_ids=set())
    for prompt, group in zip(prompts, together, strict=True):
        tokens, _ = reference(lm, prompt, 6)
        assert group[0].text == lm.tokenizer.decode(tokens, skip_special_tokens=True)


def test_batches_shrink_to_what_memory_allows(lm, monkeypatch):
    prompts = [lm.tokenizer(PREFIX + q)["input_ids"] for q in QUESTIONS * 4]
    runner = _Runner(lm.model, lm, Sampling(max_new_tokens=64), set(), None)
    assert len(runner.groups(prompts, [4] * 8, 32, None)) == 1
    width = max(len(p) for p in prompts)
    one_prompt = 4 * (width + 64) * memory.kv_cache_bytes_per_token(runner.shape) + width * (
        memory.inference_bytes_per_token(runner.shape, width=width)
    )
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": int(2.5 * one_prompt / memory.SAFETY))
    groups = runner.groups(prompts, [4] * 8, 32, None)
    assert len(groups) >= 3 and max(len(g) for g in groups) <= 3 and sorted(i for g in groups for i in g) == list(range(8))


def test_chat_stops_at_the_templates_turn_end(lm):
    tokenizer = copy.deepcopy(lm.tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|end|>"]})
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<|end|>\n{% endfor %}"
    lm = LoadedModel(lm.model, tokenizer, "cpu")
    assert end in stop_token_ids(lm, chat=True) and end not in stop_token_ids(lm)
    assert tokenizer.eos_token_id in stop_token_ids(lm, chat=True)
