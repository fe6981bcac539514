"""The ``vllm`` backend on vLLM's offline engine: generate and eval, an adapter from ``curator train``, the defects of issue 10."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pyarrow.parquet as pq
import pytest
from helpers_vllm import candidates, generate_args, manifest, run

from curator.backend import BackendOptions, Request, Result, SamplingParams, stream_results

pytestmark = pytest.mark.vllm

DTYPE = ("--dtype", "float32")
PROMPTS = [f"Q: Lena has {a} books and buys {b} more. How many books does Lena have?\nA:"
           for a, b in ((3, 4), (12, 30), (7, 8), (41, 2))]


def complete(options: BackendOptions, requests: list[Request]) -> list[Result]:
    from curator_plugins.vllm_backend import VLLMBackend

    async def go() -> list[Result]:
        async with VLLMBackend(options) as backend:
            return [r async for r in stream_results(backend, requests)]

    return sorted(asyncio.run(go()), key=lambda r: r.request.key)


@pytest.fixture(scope="module", autouse=True)
def engine(chat_model, adapter):
    """One engine for the module, with LoRA on (it serves base requests too); freed before the served tests."""
    from curator_plugins.vllm_backend import release_engine

    complete(BackendOptions(model=str(chat_model), dtype="float32", extra={"adapter": str(adapter)}), [])
    yield
    release_engine()


def test_generate_gives_every_question_its_samples_once_with_logprobs_and_repeats(questions, chat_model, tmp_path):
    sampled = ("--backend", "vllm", "--n", "3", "--temperature", "1.0", "--seed", "0", *DTYPE)
    for name in ("first", "again"):
        assert run(generate_args(questions, tmp_path / name, chat_model, *sampled)) == 0
    rows = candidates(tmp_path / "first")
    assert sorted((r["id"], r["sample"]) for r in rows) == [(f"q{i}", s) for i in range(6) for s in range(3)]
    assert all(r["logprob"] is not None and r["logprob"] < 0 and r["n_tokens"] >= 1 for r in rows)
    assert {r["finish_reason"] for r in rows} <= {"stop", "length"}
    assert len({r["rationale"] for r in rows}) > 6  # sampled, not three copies of one
    assert pq.read_table(tmp_path / "again" / "candidates.parquet").equals(
        pq.read_table(tmp_path / "first" / "candidates.parquet"))
    backend = manifest(tmp_path / "first")["backend"]
    assert backend["backend"] == "vllm" and backend["max_model_len"] == 1024 and "adapter" not in backend


def test_seeded_long_prompts_in_one_batch_do_not_kill_the_cpu_engine(chat_model):
    """Prompts longer than a prefill step together: with chunked prefill on, this is the CPU engine's crash."""
    long = " ".join(f"Tom has {i} apples and buys {i + 1} more." for i in range(50))
    params = SamplingParams(n=2, temperature=1.0, max_tokens=8, logprobs=True)
    requests = [Request.single_turn(f"{long} Q{i}:", replace(params, seed=100 + i), key=i) for i in range(8)]
    options = BackendOptions(model=str(chat_model), dtype="float32", batch_size=16)
    first, second = complete(options, requests), complete(options, requests)
    assert all(r.ok and len(r.completions) == 2 for r in first)
    assert [r.completions for r in first] == [r.completions for r in second]


def test_a_prompt_longer_than_the_context_fails_alone(chat_model):
    too_long = " ".join(f"Tom has {i} apples." for i in range(400))
    requests = [Request.single_turn(p, SamplingParams(max_tokens=4), key=i)
                for i, p in enumerate([PROMPTS[0], too_long, PROMPTS[1]])]
    short, refused, other = complete(BackendOptions(model=str(chat_model), dtype="float32"), requests)
    assert short.ok and other.ok
    assert refused.error.startswith("VLLMValidationError: This model's maximum context length is 1024 tokens")


def test_greedy_with_several_samples_is_one_sample_repeated(chat_model):
    [result] = complete(BackendOptions(model=str(chat_model), dtype="float32"),
                        [Request.single_turn(PROMPTS[0], SamplingParams(n=3, max_tokens=8), key=0)])
    assert result.ok and len(result.completions) == 3 and len(set(result.completions)) == 1


def test_the_adapter_from_curator_train_matches_transformers_and_peft_on_16_greedy_tokens(chat_model, adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    params = SamplingParams(max_tokens=16)
    requests = [Request.single_turn(p, params, key=i) for i, p in enumerate(PROMPTS)]
    served = complete(BackendOptions(model=str(chat_model), dtype="float32", extra={"adapter": str(adapter)}),
                      requests)
    base = complete(BackendOptions(model=str(chat_model), dtype="float32"), requests)

    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(chat_model, dtype=torch.float32),
                                      str(adapter)).eval()
    expected = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        new = out[0, ids["input_ids"].shape[1]:]
        # vLLM holds back a last byte-level token that ends inside a UTF-8 character; transformers shows U+FFFD
        expected.append((tokenizer.decode(new, skip_special_tokens=True).rstrip("\ufffd"), len(new)))
    assert [(r.completions[0].text, r.completions[0].n_tokens) for r in served] == expected
    assert [r.completions[0].text for r in base] != [text for text, _ in expected]  # the adapter is applied


def test_generate_and_eval_with_the_adapter_record_it(questions, chat_model, adapter, tmp_path):
    out = tmp_path / "gen"
    args = generate_args(questions, out, chat_model, "--backend", "vllm", "--backend-option", f"adapter={adapter}",
                         *DTYPE)
    assert run(args) == 0
    assert manifest(out)["backend"]["adapter"] == {"path": str(adapter.resolve()), "base": str(chat_model)}
    assert {r["model"] for r in candidates(out)} == {str(chat_model)}

    evaluated = tmp_path / "eval"
    code = run(["eval", "--model", str(chat_model), "--adapter", str(adapter), "--data", str(questions),
                "--task", "gsm8k", "--strategy", "greedy", "--backend", "vllm", "--max-tokens", "16",
                "--dtype", "float32", "--output", str(evaluated), "--no-progress"])
    assert code == 0
    metrics = (evaluated / "metrics.json").read_text()
    assert '"questions": 6' in metrics and '"failed_requests": 0' in metrics
    predictions = pq.read_table(evaluated / "predictions.parquet")
    assert predictions.num_rows >= 6


def test_chat_goes_through_the_folders_chat_template(questions, chat_model, tmp_path):
    out = tmp_path / "chat"
    assert run(generate_args(questions, out, chat_model, "--backend", "vllm", "--chat", *DTYPE)) == 0
    rows = candidates(out)
    assert len(rows) == 6 and all(r["answer_text"] is not None for r in rows)


def test_samples_shortened_by_the_context_are_recorded(questions, chat_model, tmp_path):
    """vLLM lowers max_tokens to what the prompt leaves of the context, silently; the run says so."""
    exemplars = tmp_path / "one.jsonl"
    exemplars.write_text('{"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = 7."}\n')
    out = tmp_path / "long"
    single_stage = ("--prompt", "few-shot-cot", "--exemplars", str(exemplars))
    with pytest.warns(UserWarning, match=r"samples stopped before --max-tokens 1020") as caught:
        code = run(generate_args(questions, out, chat_model, "--backend", "vllm", *DTYPE, *single_stage,
                                 "--max-tokens", "1020"))
    assert code == 0
    rows = candidates(out)
    cut = [r for r in rows if r["finish_reason"] == "length"]
    assert cut and all(r["n_tokens"] < 1020 for r in cut)  # cut by the context, not by --max-tokens
    assert all(r["finish_reason"] == "stop" for r in rows if r not in cut)  # the others ended themselves
    assert manifest(out)["counts"]["shortened_by_context"] == len(cut)
    assert str(caught[0].message).startswith(f"{len(cut)} samples stopped before --max-tokens 1020")
