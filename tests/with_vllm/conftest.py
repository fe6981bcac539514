"""The opt-in vLLM suite: ``pytest -m vllm`` in an environment where vllm imports (``bench/vllm_cpu.sh venv``).

Every test here runs vLLM itself, offline (``vllm.LLM`` in this process) and
served (``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1), on a
tiny Llama built on the spot with a chat template and a LoRA adapter trained
on it by ``curator train``; with ``CURATOR_REAL_MODEL`` naming a folder of
SmolLM2-135M-Instruct, on that too. Engines take a minute or two to start
on CPU, so each module starts at most one server, and the offline engine is
shared by the module's runs (the backend keeps it).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from helpers_vllm import train_adapter

from curator.testing.tiny import arithmetic_corpus, build_tiny_llama, train_tokenizer

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    mine = [item for item in items if here in Path(item.fspath).parents]
    if importlib.util.find_spec("vllm") is None:
        reason = "vllm is not installed here (make its environment with: bench/vllm_cpu.sh venv)"
    elif "vllm" not in (config.getoption("markexpr") or ""):
        reason = "opt-in: run with pytest -m vllm"
    else:
        return
    for item in mine:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def chat_model(tmp_path_factory) -> Path:
    """A tiny Llama vLLM can run on CPU (head size 32) with a chat template."""
    tokenizer = train_tokenizer(arithmetic_corpus(), 512)
    tokenizer.chat_template = CHAT_TEMPLATE
    # a wide initialisation gives peaked next-token distributions, so greedy decoding has no near-ties
    return build_tiny_llama(tmp_path_factory.mktemp("vllm") / "tiny-chat", tokenizer=tokenizer, hidden_size=64,
                            intermediate_size=128, num_attention_heads=2, num_key_value_heads=1,
                            initializer_range=0.2)


@pytest.fixture(scope="session")
def adapter(chat_model, tmp_path_factory) -> Path:
    return train_adapter(chat_model, tmp_path_factory.mktemp("vllm") / "adapter")


@pytest.fixture(scope="session")
def real_model() -> Path:
    folder = os.environ.get("CURATOR_REAL_MODEL")
    if not folder:
        pytest.skip("set CURATOR_REAL_MODEL to a folder of SmolLM2-135M-Instruct to run vLLM on it")
    if not (Path(folder) / "config.json").is_file():
        pytest.fail(f"CURATOR_REAL_MODEL={folder}: no config.json there")
    return Path(folder)


@pytest.fixture(scope="session")
def questions(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vllm") / "questions.jsonl"
    lines = arithmetic_corpus(6, seed=11)
    with path.open("w") as out:
        for i, line in enumerate(lines):
            question, answer = line.split("\nA: ")
            out.write(json.dumps({"id": f"q{i}", "question": question[3:], "answer": answer.rsplit(" ", 1)[-1][:-1]})
                      + "\n")
    return path
