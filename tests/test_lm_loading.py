"""Loading: device and dtype choices, adapters, the build-wide model cache, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from curator import CuratorError, Filter, FilterContext, MissingDependency
from curator.lm.loading import require_lm
from curator.lm.options import ModelOptions, locate

torch = pytest.importorskip("torch")


class CountingModels:
    """The build-wide cache as the engine keeps it, counting real loads."""

    def __init__(self) -> None:
        self.store: dict = {}
        self.loads = 0

    def get(self, key, load):
        if key not in self.store:
            self.loads += 1
            self.store[key] = load()
        return self.store[key]


@dataclass(kw_only=True)
class Probe(ModelOptions, Filter):
    name = "probe"

    def score(self, batch, context):
        return {}

    def select(self, batch, stats):
        raise NotImplementedError


def context_at(base_dir: Path, models=None) -> FilterContext:
    return FilterContext(task=None, base_dir=base_dir, models=models or CountingModels(), device="cpu")


def test_dtype_is_fp32_on_cpu_and_overridable():
    from curator.lm.loading import torch_dtype

    assert torch_dtype(None, "cpu") is torch.float32
    assert torch_dtype("auto", "cpu") is torch.float32
    assert torch_dtype("bfloat16", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be one of"):
        torch_dtype("int8", "cpu")


def test_filters_naming_the_same_model_share_one_copy(tiny_llama):
    models = CountingModels()
    context = context_at(tiny_llama.parent, models)
    first = Probe(model=tiny_llama.name).causal_lm(context)
    second = Probe(model=str(tiny_llama)).causal_lm(context)
    assert first is second and models.loads == 1
    assert first.device == "cpu" and first.model.dtype is torch.float32 and not first.model.training
    Probe(model=str(tiny_llama), dtype="bfloat16").causal_lm(context)
    assert models.loads == 2


def test_a_single_adapter_is_merged_and_scores_like_the_unmerged_model(tiny_llama, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from curator.lm.loading import load_causal_lm
    from curator.lm.scoring import score_texts
    from curator.testing.tiny import build_tiny_lora

    adapter = build_tiny_lora(tiny_llama, tmp_path / "lora", seed=3)
    merged = load_causal_lm(str(tiny_llama), adapter=str(adapter), device="cpu")
    assert not hasattr(merged.model, "peft_config")
    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), adapter).eval()
    plain = load_causal_lm(str(tiny_llama), device="cpu")
    prompts, completions = ["Q: Tom has 3 eggs.\nA:"] * 2, [" He has 3 eggs.", " 3"]
    got = score_texts(merged, prompts, completions).logprob
    base = score_texts(plain, prompts, completions).logprob
    ids = torch.tensor([merged.tokenizer(prompts[0] + completions[0])["input_ids"]])
    with torch.no_grad():
        reference = unmerged(ids).logits[0].log_softmax(-1)
    start = len(merged.tokenizer(prompts[0])["input_ids"])
    expected = sum(reference[t - 1, ids[0, t]].item() for t in range(start, ids.shape[1]))
    assert got[0] == pytest.approx(expected, rel=1e-5)
    assert not np.allclose(got, base)


def test_hub_names_go_to_from_pretrained_untouched_and_remote_code_stays_off(monkeypatch, tmp_path):
    import transformers

    from curator.lm import loading

    calls = []

    class Fake:
        @classmethod
        def from_pretrained(cls, name, **kwargs):
            calls.append((name, kwargs))
            raise RuntimeError("offline")

    monkeypatch.setattr(transformers, "AutoModelForCausalLM", Fake)
    name = locate(context_at(tmp_path), "Qwen/Qwen2.5-1.5B")
    with pytest.raises(RuntimeError, match="offline"):
        loading.load_causal_lm(name, device="cpu")
    assert calls == [
        ("Qwen/Qwen2.5-1.5B", {"dtype": torch.float32, "device_map": "cpu", "trust_remote_code": False, "revision": None,
                               "use_safetensors": True})
    ]


def test_paths_resolve_against_the_recipe_folder(tmp_path):
    (tmp_path / "models" / "lm").mkdir(parents=True)
    context = context_at(tmp_path)
    assert locate(context, "models/lm") == str(tmp_path / "models" / "lm")
    with pytest.raises(CuratorError, match="no such model folder"):
        locate(context, "./missing-model")


def test_bad_options_are_named_with_the_step():
    with pytest.raises(CuratorError, match="step 's1': option 'dtype'"):
        Probe(model="m", dtype="fp8").check_model_options("s1")
    with pytest.raises(CuratorError, match="option 'batch_tokens' must be positive"):
        Probe(model="m", batch_tokens=0).check_model_options("s1")


def test_missing_torch_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependency, match=r"rationale-curator\[lm\]"):
        require_lm("filter 'ds_weight'")


def test_importing_the_model_backed_plugins_does_not_import_torch():
    code = (
        "import sys, curator, curator.lm.options, curator.lm.loading\n"
        "import curator_plugins.ds_weight, curator_plugins.self_eval\n"
        "import curator_plugins.reward_model, curator_plugins.nce_kl\n"
        "assert not {'torch', 'transformers', 'peft'} & set(sys.modules), 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
