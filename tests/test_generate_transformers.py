"""The transformers backend on a tiny Llama built by the test session."""

from __future__ import annotations

import asyncio
import json
import math

import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from curator.backend import BackendOptions, Request, SamplingParams  # noqa: E402
from curator.errors import CuratorError  # noqa: E402
from curator.generate import GenerateConfig, ZeroShotCoT, run_generate  # noqa: E402
from curator.lm.decoding import finish  # noqa: E402
from curator_plugins.transformers_backend import TransformersBackend  # noqa: E402

PROMPTS = ["Q: Tom has 3 apples and buys 4 more. How many apples does Tom have?\nA:", "Q: Kai has 9 eggs.\nA:"]


def _opened(model_path, **options) -> TransformersBackend:
    backend = TransformersBackend(BackendOptions(model=str(model_path), device="cpu", **options))
    asyncio.run(backend.open())
    return backend


@pytest.fixture(scope="module")
def backend(tiny_llama) -> TransformersBackend:
    return _opened(tiny_llama)


def test_greedy_logprob_is_the_models_own_and_batching_does_not_change_it(backend):
    params = SamplingParams(max_tokens=8, logprobs=True)
    alone = backend.generate_batch([Request.single_turn(PROMPTS[1], params)])[0]
    batched = backend.generate_batch([Request.single_turn(p, params) for p in PROMPTS])[1]
    [completion] = alone.completions
    assert batched.completions[0].text == completion.text
    assert batched.completions[0].logprob == pytest.approx(completion.logprob, abs=1e-4)

    lm = backend._lm
    prompt_ids = lm.tokenizer(PROMPTS[1], return_tensors="pt")["input_ids"]
    generated = lm.model.generate(prompt_ids, max_new_tokens=8, do_sample=False, pad_token_id=lm.pad_id)
    new = generated[0, prompt_ids.shape[1] :]
    with torch.inference_mode():
        logits = lm.model(generated).logits[0, prompt_ids.shape[1] - 1 : -1].float()
    expected = torch.log_softmax(logits, -1).gather(1, new[:, None]).sum().item()
    assert completion.text == lm.tokenizer.decode(new, skip_special_tokens=True)
    assert completion.n_tokens == len(new) == 8 and completion.finish_reason == "length"
    assert completion.logprob == pytest.approx(expected, abs=1e-3)
    assert alone.usage.completion_tokens == 8 and alone.usage.prompt_tokens == prompt_ids.shape[1]


def test_sampling_n_per_request_and_cutting_at_a_stop_string(backend):
    params = SamplingParams(n=3, temperature=1.0, max_tokens=10, logprobs=True, seed=7)
    [result] = backend.generate_batch([Request.single_turn(PROMPTS[0], params)])
    assert len(result.completions) == 3 and len({c.text for c in result.completions}) > 1
    assert all(c.logprob < 0 and 1 <= c.n_tokens <= 10 for c in result.completions)

    tokenizer = backend._lm.tokenizer
    ids = tokenizer(" 3 + 4 = 7.\nQ: Tom", add_special_tokens=False)["input_ids"]
    logprobs = [-0.5] * len(ids)
    completion = finish(tokenizer, ids, logprobs, {tokenizer.eos_token_id}, ("\nQ:",))
    kept = completion.n_tokens
    assert completion.text == " 3 + 4 = 7." and completion.finish_reason == "stop"
    assert tokenizer.decode(ids[:kept]).startswith(" 3 + 4 = 7.") and kept < len(ids)
    assert completion.logprob == pytest.approx(-0.5 * kept)
    ended = finish(tokenizer, [*ids[:3], tokenizer.eos_token_id, 0, 0], logprobs, {tokenizer.eos_token_id}, ())
    assert ended.n_tokens == 4 and ended.finish_reason == "stop"


def test_chat_needs_a_chat_template(tiny_llama):
    with pytest.raises(CuratorError, match="has no chat template"):
        _opened(tiny_llama, chat=True)


def test_generate_runs_on_the_embedded_backend(tiny_llama, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Ali has {i} books."}) + "\n" for i in range(3)))
    config = GenerateConfig(
        input=str(questions), output=str(tmp_path / "out"), task="gsm8k", backend="transformers",
        model=str(tiny_llama), n=2, temperature=0.8, max_tokens=12, answer_max_tokens=4, seed=0, progress=False,
        device="cpu", batch_size=4,
    )
    summary = run_generate(config)
    assert (summary.questions, summary.rows, summary.failed) == (3, 6, 0)
    table = pq.read_table(tmp_path / "out" / "candidates.parquet")
    assert table["id"].to_pylist() == ["q0", "q0", "q1", "q1", "q2", "q2"]
    assert table["sample"].to_pylist() == [0, 1] * 3
    assert "reference" not in table.column_names
    assert all(math.isfinite(x) and x < 0 for x in table["logprob"].to_pylist())
    assert all(1 <= n <= 12 for n in table["n_tokens"].to_pylist())
    manifest = summary.manifest
    assert manifest["backend"]["device"] == "cpu" and manifest["backend"]["batch_size"] == 4
    assert manifest["in_flight"]["peak"] <= 4


def test_chat_requests_go_through_the_chat_template(backend, tiny_llama, monkeypatch):
    template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}<assistant>"
    monkeypatch.setattr(backend._lm.tokenizer, "chat_template", template, raising=False)
    chat = TransformersBackend(BackendOptions(model=str(tiny_llama), chat=True))
    chat._lm = backend._lm
    first = ZeroShotCoT().first("Two plus two?", SamplingParams())
    second = ZeroShotCoT().second(first, " It is 4.", SamplingParams(max_tokens=3))
    assert chat._render(second) == (
        "<user>Q: Two plus two?\nA: Let's think step by step.\n<assistant>It is 4.\n"
        "<user>Therefore, the answer is\n<assistant>"
    )
    [result] = chat.generate_batch([second])
    assert result.ok and result.completions[0].n_tokens <= 3
