"""A 128k-vocabulary model scores long sequences in a memory bound that full logits would break."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

VOCAB = 128_256
SEQUENCES, LENGTH = 2, 1024
FULL_LOGITS_BYTES = SEQUENCES * LENGTH * VOCAB * 4  # one fp32 [batch, seq, vocab] tensor: 1.05 GB
BOUND_BYTES = 400 << 20

# Run in a fresh process so its peak resident memory says what scoring used.
SCRIPT = f"""
import json
import numpy as np, torch
from transformers import LlamaForCausalLM
from curator.lm.loading import LoadedModel
from curator.lm.scoring import Encoded, score_encoded
from curator.testing.tiny import arithmetic_corpus, tiny_llama_config, train_tokenizer

def status(field):  # VmRSS now, VmHWM its peak (ru_maxrss would carry the parent's peak over exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

torch.manual_seed(0)
config = tiny_llama_config({VOCAB}, max_position_embeddings={LENGTH})
lm = LoadedModel(LlamaForCausalLM(config).eval(), train_tokenizer(arithmetic_corpus(50)), "cpu")
rng = np.random.default_rng(0)
ids = [rng.integers(4, {VOCAB}, {LENGTH}).tolist() for _ in range({SEQUENCES})]
score_encoded(lm, Encoded([ids[0][:8]], [1], np.zeros(1, bool)))  # warm up allocators and kernels
before = status("VmRSS")
scores = score_encoded(lm, Encoded(ids, [1] * {SEQUENCES}, np.zeros({SEQUENCES}, bool)), token_budget={SEQUENCES * LENGTH})
peak = status("VmHWM")
print(json.dumps({{"growth": peak - before, "n_tokens": scores.n_tokens.tolist(),
                   "mean_nll": scores.mean_nll.tolist()}}))
"""


def test_large_vocabulary_scores_long_sequences_within_a_memory_bound():
    assert FULL_LOGITS_BYTES > 2.5 * BOUND_BYTES
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["n_tokens"] == [LENGTH - 1] * SEQUENCES
    # A random model is near-uniform over the vocabulary: NLL close to ln(VOCAB).
    assert all(abs(nll - 11.76) < 0.5 for nll in report["mean_nll"])
    assert report["growth"] < BOUND_BYTES, f"scoring grew resident memory by {report['growth'] / 2**20:.0f} MiB"


def test_scoring_budgets_shrink_to_the_memory_available_and_refuse_what_cannot_fit(tiny_llama, monkeypatch):
    import curator.lm.memory as memory
    from curator.errors import CuratorError
    from curator.lm.loading import load_causal_lm
    from curator.lm.scoring import score_texts

    lm = load_causal_lm(str(tiny_llama), device="cpu")
    shape = memory.ModelShape.of(lm.model.config)
    width = 40
    per_token = memory.inference_bytes_per_token(shape, width=width)
    fixed = memory.head_chunk_bytes(shape, width)
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": int((fixed + 100 * per_token) / memory.SAFETY))
    budget = memory.inference_token_budget(lm.model, width, None, 4096, "cpu")
    assert 95 <= budget <= 100  # the default (4,096) shrank to what fits
    assert memory.inference_token_budget(lm.model, width, 80, 4096, "cpu") == 80
    with pytest.raises(CuratorError, match=r"batch_tokens 1,000: .* lower batch_tokens$"):
        memory.inference_token_budget(lm.model, width, 1000, 4096, "cpu")
    with pytest.raises(CuratorError, match="lower max_length or free memory"):
        memory.inference_token_budget(lm.model, 400, None, 4096, "cpu")
    # Scoring still runs, in smaller batches, with the same results.
    texts = ["Q: Tom has 3 apples.\nA:"] * 6
    small = score_texts(lm, texts, [" He has 3 apples."] * 6, span="all")
    monkeypatch.undo()
    assert np.allclose(small.logprob, score_texts(lm, texts, [" He has 3 apples."] * 6, span="all").logprob)
