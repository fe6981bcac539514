"""The ``openai`` backend against a real vLLM server, and against the offline engine on the same model and seed.

The offline runs come first (``offline``), and their engine is freed before
the server starts: this machine holds one vLLM at a time.
"""

from __future__ import annotations

import asyncio

import pyarrow.parquet as pq
import pytest
from helpers_vllm import ADAPTER_RANK, candidates, generate_args, manifest, run

from curator.backend import BackendOptions, Request, SamplingParams, stream_results
from curator.testing.vllm_server import VLLMServer

pytestmark = pytest.mark.vllm

SAMPLED = ("--n", "3", "--temperature", "1.0", "--seed", "0")


def eval_args(questions, output, model, *extra: str) -> list[str]:
    return ["eval", "--model", str(model), "--data", str(questions), "--task", "gsm8k", "--strategy", "greedy",
            "--max-tokens", "16", "--output", str(output), "--no-progress", *extra]


@pytest.fixture(scope="module")
def offline(questions, chat_model, adapter, tmp_path_factory):
    """What the offline engine writes for the runs the server must match."""
    from curator_plugins.vllm_backend import release_engine

    root = tmp_path_factory.mktemp("offline")
    local = ("--backend", "vllm", "--dtype", "float32")
    assert run(generate_args(questions, root / "sampled", chat_model, *local, *SAMPLED)) == 0
    assert run(generate_args(questions, root / "adapter", chat_model, *local,
                             "--backend-option", f"adapter={adapter}")) == 0
    assert run(eval_args(questions, root / "eval", chat_model, "--backend", "vllm", "--dtype", "float32",
                         "--adapter", str(adapter))) == 0
    release_engine()
    return root


@pytest.fixture(scope="module")
def server(offline, chat_model, adapter):
    flags = ("--dtype", "float32", "--seed", "0", "--max-model-len", "1024", "--enable-lora",
             "--lora-modules", f"tiny-lora={adapter}", "--max-lora-rank", str(ADAPTER_RANK))
    with VLLMServer(chat_model, *flags, name="tiny") as running:
        yield running


def served(server: VLLMServer) -> tuple[str, ...]:
    return ("--backend", "openai", "--base-url", server.base_url)


def test_served_samples_arrive_once_with_logprobs_repeat_and_equal_the_offline_engines(
    server, offline, questions, tmp_path
):
    for name in ("first", "again"):
        assert run(generate_args(questions, tmp_path / name, "tiny", *served(server), *SAMPLED)) == 0
    rows = candidates(tmp_path / "first")
    assert sorted((r["id"], r["sample"]) for r in rows) == [(f"q{i}", s) for i in range(6) for s in range(3)]
    assert all(r["logprob"] is not None and r["logprob"] < 0 and r["n_tokens"] >= 1 for r in rows)
    assert pq.read_table(tmp_path / "again" / "candidates.parquet").equals(
        pq.read_table(tmp_path / "first" / "candidates.parquet"))
    local = candidates(offline / "sampled")
    for key in ("id", "sample", "rationale", "answer_text", "answer", "n_tokens", "finish_reason"):
        assert [r[key] for r in rows] == [r[key] for r in local], key
    assert [r["logprob"] for r in rows] == pytest.approx([r["logprob"] for r in local], abs=1e-3)


def test_a_served_adapter_writes_what_the_offline_adapter_writes_and_is_recorded(
    server, offline, questions, adapter, tmp_path
):
    out = tmp_path / "lora"
    assert run(generate_args(questions, out, "tiny-lora", *served(server))) == 0
    local = candidates(offline / "adapter")
    assert [r["rationale"] for r in candidates(out)] == [r["rationale"] for r in local]
    base = tmp_path / "base"
    assert run(generate_args(questions, base, "tiny", *served(server))) == 0
    assert [r["rationale"] for r in candidates(base)] != [r["rationale"] for r in local]  # the adapter is applied
    assert manifest(out)["backend"]["adapter"] == {"name": "tiny-lora", "path": str(adapter), "base": "tiny"}
    assert manifest(out)["backend"]["max_model_len"] == 1024


def test_eval_through_the_server_with_the_adapter_equals_eval_offline(server, offline, questions, tmp_path):
    out = tmp_path / "eval"
    assert run(eval_args(questions, out, "tiny-lora", "--base-url", server.base_url)) == 0
    served_predictions = pq.read_table(out / "predictions.parquet")
    local = pq.read_table(offline / "eval" / "predictions.parquet")
    assert served_predictions["candidate_text"].to_pylist() == local["candidate_text"].to_pylist()
    assert served_predictions["prediction"].to_pylist() == local["prediction"].to_pylist()


def test_chat_requests_use_the_servers_chat_template(server, questions, tmp_path):
    out = tmp_path / "chat"
    assert run(generate_args(questions, out, "tiny", *served(server), "--chat")) == 0
    rows = candidates(out)
    assert len(rows) == 6 and all(r["logprob"] is not None for r in rows)


def test_greedy_with_several_samples_is_asked_once(server):
    from curator_plugins.openai_backend import OpenAIBackend

    async def go():
        backend = OpenAIBackend(BackendOptions(model="tiny", base_url=server.base_url))
        async with backend:
            request = Request.single_turn("Q: Tom has 3 apples?\nA:", SamplingParams(n=4, max_tokens=8), key=0)
            return [r async for r in stream_results(backend, [request])]

    [result] = asyncio.run(go())
    assert result.ok, result.error  # vLLM itself refuses n=4 at temperature 0
    assert len(result.completions) == 4 and len(set(result.completions)) == 1


def test_samples_shortened_by_the_servers_context_are_recorded(server, questions, tmp_path):
    exemplars = tmp_path / "one.jsonl"
    exemplars.write_text('{"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = 7."}\n')
    out = tmp_path / "long"
    with pytest.warns(UserWarning, match="samples stopped before --max-tokens 1020"):
        code = run(generate_args(questions, out, "tiny", *served(server), "--prompt", "few-shot-cot",
                                 "--exemplars", str(exemplars), "--max-tokens", "1020"))
    assert code == 0
    cut = [r for r in candidates(out) if r["finish_reason"] == "length"]
    assert cut and all(r["n_tokens"] < 1020 for r in cut)
    assert manifest(out)["counts"]["shortened_by_context"] == len(cut)
