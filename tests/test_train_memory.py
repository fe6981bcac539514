"""The trainer's memory plan: the estimate against a measured peak, and the choice it makes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from curator.errors import CuratorError
from curator.lm.memory import GiB, ModelShape, available_memory, cgroup_headroom, parse_size, training_bytes
from curator.train.memory import DEFAULT_STEP_TOKENS, Workload, plan_memory

SMOLLM2 = ModelShape(layers=30, hidden=576, intermediate=1536, heads=9, kv_heads=3, head_dim=64, vocab=49152)

# One micro-batch of a LoRA run on a small Llama, in a fresh process so its peak resident memory is its own.
MEASURE = """
import json, sys
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM
from curator.lm.memory import ModelShape, resident_bytes, return_freed_memory, training_bytes
from curator.testing.tiny import tiny_llama_config
from curator.train.losses import linear_cross_entropy

checkpointing = sys.argv[1] == "1"
rows, width = 4, 512
return_freed_memory()
torch.manual_seed(0)
config = tiny_llama_config(8192, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2)
model = LlamaForCausalLM(config)
if checkpointing:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear"))
model.train()
decoder, head = model.get_base_model().get_decoder(), model.get_base_model().get_output_embeddings()

def step(rows, width):
    ids = torch.randint(4, 8192, (rows, width))
    mask = torch.ones_like(ids)
    mask[0, : width // 4] = 0  # a padded row, so attention takes a mask as in padded batches
    hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state.flatten(0, 1)
    linear_cross_entropy(hidden, head, ids.flatten(), torch.ones(hidden.shape[0])).backward()

step(1, 16)  # warm up kernels and thread pools
before = resident_bytes()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current resident size
step(rows, width)
measured = resident_bytes("VmHWM") - before
estimate = training_bytes(ModelShape.of(config), rows * width, width=width, checkpointing=checkpointing,
                          lora_dropout=0.05)
print(json.dumps({"measured": measured, "estimate": estimate}))
"""


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
def test_the_estimate_bounds_a_measured_training_step(checkpointing):
    pytest.importorskip("peft")
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, "1" if checkpointing else "0"], capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    measured, estimate = report["measured"], report["estimate"]
    assert measured > 50 << 20  # the step really allocated what it is measured for
    # An upper bound within a small factor: never under the measured peak by more than 10 %, never 2x over.
    assert measured <= 1.1 * estimate, f"measured {measured >> 20} MiB over the estimate {estimate >> 20} MiB"
    assert estimate <= 2.0 * measured, f"estimate {estimate >> 20} MiB, measured only {measured >> 20} MiB"


def smollm2_work(longest: int = 257) -> Workload:
    return Workload(SMOLLM2, longest=longest, attention="sdpa", packed=False, lora_r=16, lora_dropout=0.05)


def test_plenty_of_memory_keeps_the_whole_step_in_one_micro_batch():
    plan = plan_memory(smollm2_work(), batch_tokens=None, grad_accum=1, checkpointing=None, device="cpu",
                       available=64 * GiB)
    assert (plan.batch_tokens, plan.grad_accum, plan.gradient_checkpointing) == (DEFAULT_STEP_TOKENS, 1, False)
    assert plan.chosen and plan.estimated_bytes <= 0.8 * 64 * GiB


def test_less_memory_splits_the_step_and_keeps_its_tokens():
    # The case: the old default (8,192 tokens, no checkpointing) needs about 18 GiB.
    assert training_bytes(SMOLLM2, 8192, width=257, checkpointing=False, lora_dropout=0.05) > 17 * GiB
    plan = plan_memory(smollm2_work(), batch_tokens=None, grad_accum=2, checkpointing=None, device="cpu",
                       available=6 * GiB)
    assert not plan.gradient_checkpointing
    assert plan.estimated_bytes <= 0.8 * 6 * GiB
    steps = plan.grad_accum // 2
    assert steps > 1 and plan.batch_tokens * steps >= DEFAULT_STEP_TOKENS > plan.batch_tokens * (steps - 1)
    assert "chosen for the memory available" in plan.line() and "6.0 GiB available" in plan.line()


def test_checkpointing_comes_on_only_when_small_micro_batches_would_not_fit():
    plan = plan_memory(smollm2_work(), batch_tokens=None, grad_accum=1, checkpointing=None, device="cpu",
                       available=int(1.2 * GiB))
    assert plan.gradient_checkpointing
    assert plan.estimated_bytes <= 0.8 * 1.2 * GiB
    forced_off = plan_memory(smollm2_work(), batch_tokens=None, grad_accum=1, checkpointing=False, device="cpu",
                             available=int(1.2 * GiB))
    assert not forced_off.gradient_checkpointing and forced_off.batch_tokens < plan.batch_tokens


def test_settings_the_user_gave_are_kept_or_refused_in_one_line():
    kept = plan_memory(smollm2_work(), batch_tokens=1024, grad_accum=3, checkpointing=None, device="cpu",
                       available=8 * GiB)
    assert (kept.batch_tokens, kept.grad_accum, kept.gradient_checkpointing) == (1024, 3, False)
    assert kept.chosen  # checkpointing was left open
    fixed = plan_memory(smollm2_work(), batch_tokens=1024, grad_accum=1, checkpointing=True, device="cpu",
                        available=8 * GiB)
    assert fixed.gradient_checkpointing and not fixed.chosen and "as configured" in fixed.line()
    with pytest.raises(CuratorError) as refused:
        plan_memory(smollm2_work(), batch_tokens=8192, grad_accum=1, checkpointing=False, device="cpu",
                    available=6 * GiB)
    message = str(refused.value)
    assert "\n" not in message and "8,192 tokens" in message and "lower --batch-tokens (about" in message
    assert "add --gradient-checkpointing" in message


def test_nothing_fits_names_the_longest_sample():
    with pytest.raises(CuratorError, match=r"lower --max-length \(the longest sample has 4,097 tokens\)"):
        plan_memory(smollm2_work(longest=4097), batch_tokens=None, grad_accum=1, checkpointing=None,
                    device="cpu", available=256 << 20)


def test_available_memory_honours_the_limit_variable_and_the_cgroup(monkeypatch, tmp_path):
    assert available_memory("cpu") > 0
    monkeypatch.setenv("CURATOR_MEMORY_LIMIT", "64TiB")
    unlimited = available_memory("cpu")
    monkeypatch.setenv("CURATOR_MEMORY_LIMIT", "1T")
    assert available_memory("cpu") == unlimited  # a limit above what the machine has changes nothing
    monkeypatch.setenv("CURATOR_MEMORY_LIMIT", "1KiB")
    assert available_memory("cpu") == 0  # this process already holds more than 1 KiB
    assert parse_size("6GiB") == 6 * GiB and parse_size("512M") == 512 << 20 and parse_size("1.5g") == 3 * GiB // 2
    with pytest.raises(CuratorError, match="CURATOR_MEMORY_LIMIT: expected a size"):
        parse_size("lots")
    (tmp_path / "memory.max").write_text(f"{4 * GiB}\n")
    (tmp_path / "memory.current").write_text(f"{GiB}\n")
    assert cgroup_headroom(tmp_path) == 3 * GiB
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_headroom(tmp_path) is None
