"""vLLM on SmolLM2-135M-Instruct (``CURATOR_REAL_MODEL=DIR``): an adapter from ``curator train``, both paths.

HF hub name ``HuggingFaceTB/SmolLM2-135M-Instruct``; the folder is passed by
path (see the README for how to make it). Skipped without the variable.
"""

from __future__ import annotations

import asyncio

import pytest
from helpers_vllm import ADAPTER_RANK, candidates, generate_args, run, train_adapter

from curator.backend import BackendOptions, Request, Result, SamplingParams, stream_results
from curator.testing.vllm_server import VLLMServer

pytestmark = pytest.mark.vllm

PROMPTS = ["Q: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether in April and May?\nA:",
           "Q: Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
           "How much did she earn?\nA:"]
ENGINE = ("--dtype", "float32", "--max-model-len", "2048")
SAMPLED = ("--n", "2", "--temperature", "0.8", "--seed", "3", "--max-tokens", "24")


@pytest.fixture(scope="module")
def smol_adapter(real_model, tmp_path_factory):
    return train_adapter(real_model, tmp_path_factory.mktemp("smol") / "adapter", steps=2)


@pytest.fixture(scope="module")
def offline(real_model, smol_adapter, questions, tmp_path_factory):
    """The offline engine's greedy adapter outputs and sampled rows; freed before the server starts."""
    from curator_plugins.vllm_backend import VLLMBackend, release_engine

    async def greedy() -> list[Result]:
        options = BackendOptions(model=str(real_model), dtype="float32", extra={"adapter": str(smol_adapter),
                                                                                "max_model_len": 2048})
        async with VLLMBackend(options) as backend:
            requests = [Request.single_turn(p, SamplingParams(max_tokens=16), key=i) for i, p in enumerate(PROMPTS)]
            return sorted([r async for r in stream_results(backend, requests)], key=lambda r: r.request.key)

    results = asyncio.run(greedy())
    root = tmp_path_factory.mktemp("smol-offline")
    args = generate_args(questions, root / "sampled", real_model, "--backend", "vllm", *ENGINE[:2],
                         "--backend-option", "max_model_len=2048", *SAMPLED)
    assert run(args) == 0
    release_engine()
    return results, root


def test_the_adapter_from_curator_train_matches_transformers_and_peft_on_16_greedy_tokens(
    offline, real_model, smol_adapter
):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(real_model)
    base = AutoModelForCausalLM.from_pretrained(real_model, dtype=torch.float32, use_safetensors=True)
    model = PeftModel.from_pretrained(base, str(smol_adapter)).eval()
    results, _ = offline
    for prompt, result in zip(PROMPTS, results):
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        new = out[0, ids["input_ids"].shape[1]:]
        assert result.completions[0].text == tokenizer.decode(new, skip_special_tokens=True)
        assert result.completions[0].n_tokens == len(new)


def test_served_and_offline_samples_are_identical_under_one_seed(offline, real_model, smol_adapter, questions,
                                                                 tmp_path):
    _, root = offline
    flags = (*ENGINE, "--seed", "0", "--enable-lora", "--lora-modules", f"smol-lora={smol_adapter}",
             "--max-lora-rank", str(ADAPTER_RANK))
    with VLLMServer(real_model, *flags, name="smol") as server:
        url = ("--backend", "openai", "--base-url", server.base_url)
        assert run(generate_args(questions, tmp_path / "served", "smol", *url, *SAMPLED)) == 0
        assert run(generate_args(questions, tmp_path / "chat", "smol-lora", *url, "--chat")) == 0
    served, local = candidates(tmp_path / "served"), candidates(root / "sampled")
    assert [r["rationale"] for r in served] == [r["rationale"] for r in local]
    assert [r["logprob"] for r in served] == pytest.approx([r["logprob"] for r in local], abs=1e-3)
    assert all(r["rationale"].strip() for r in candidates(tmp_path / "chat"))
