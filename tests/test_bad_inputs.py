"""Bad input through every command: one line naming the culprit, exit code 2, no traceback, nothing complete.

Each case runs the real command line in this process (``curator.cli.main``)
on tiny inputs made once for the module, and checks what a user sees and
what is left on disk: stderr is exactly one ``curator: error: ...`` line that
names the file, row or option at fault, the exit code is 2, no output the
run would have written exists (no manifest, no metrics, an export target
untouched), and no temporary file is left behind. The few cases that need a
fresh process (the plugin manager is built once per process, the hub reads
``HF_HUB_OFFLINE`` at import) or a file system of their own (a full disk, a
read-only folder) run in a subprocess, the latter in a mount namespace.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from curator.cli import main
from curator.testing import make_candidates

pytest.importorskip("torch")


@dataclass
class World:
    """The inputs every case draws on, made once: data files, model and adapter folders good and bad."""

    root: Path
    paths: dict[str, Path] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Path:
        try:
            return self.paths[name]
        except KeyError:
            raise AttributeError(name) from None


def write_lines(path: Path, rows: list[dict], extra: bytes = b"") -> Path:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + extra)
    return path


def put(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def invalid_utf8_strings(values: list[bytes]) -> pa.Array:
    """A string array holding bytes that are not UTF-8 (pyarrow builds it without checking)."""
    offsets = [0]
    for value in values:
        offsets.append(offsets[-1] + len(value))
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.array(offsets, pa.int32()).buffers()[1],
                                                            pa.py_buffer(b"".join(values))])


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_llama) -> World:
    import torch
    from safetensors.torch import load_file
    from transformers.utils import logging

    from curator.testing.tiny import build_tiny_llama, build_tiny_lora
    from curator.train import TrainConfig, run_train

    logging.disable_progress_bar()  # the CLI hides it before transformers is imported; here it already is
    root = tmp_path_factory.mktemp("bad-inputs")
    w = World(root)
    p = w.paths
    table = make_candidates([["1", "1", "2"], ["5", "5"]], references=["1", "5"])
    rows = table.to_pylist()
    p["jsonl"] = write_lines(root / "c.jsonl", rows)
    p["parquet"] = root / "c.parquet"
    pq.write_table(table, p["parquet"])
    p["bad_utf8"] = write_lines(root / "bad-utf8.jsonl", rows[:2], b'{"id": "q9", "question": "\xff", "rationale": "r"}\n')
    p["bad_utf8_arrow"] = root / "bad-utf8.arrow"
    feather.write_feather(pa.table({"id": ["a", "a"], "question": ["q", "q"],
                                    "rationale": invalid_utf8_strings([b"fine", b"\xfe\xff"])}),
                          p["bad_utf8_arrow"], compression="uncompressed")
    p["bad_json"] = put(root / "bad-json.jsonl", json.dumps(rows[0]) + '\n{"id": "q0", "question": \n')
    p["no_rationale"] = write_lines(root / "no-rationale.jsonl", [{"id": "a", "question": "q"}])
    p["null_id"] = write_lines(root / "null-id.jsonl", [rows[0], {**rows[1], "id": None}])
    p["scattered"] = write_lines(root / "scattered.jsonl", [rows[0], rows[3], rows[1]])
    p["mixed"] = write_lines(root / "mixed.jsonl", [{**rows[0], "reference": 1}, {**rows[1], "reference": "one"}])
    p["keep"] = write_lines(root / "keep.jsonl", [{**r, "keep": True} for r in rows])
    p["empty"] = put(root / "empty.jsonl", "\n")
    p["csv"] = put(root / "c.csv", "id,question\n")
    p["garbage_parquet"] = put(root / "garbage.parquet", b"PAR1 not really")
    p["negative_weight"] = root / "weights.parquet"
    pq.write_table(table.append_column("weight", pa.array([1.0, 1.0, 1.0, -2.0, 1.0], pa.float32())),
                   p["negative_weight"])
    p["test_set"] = write_lines(root / "test.jsonl", [{"id": "t1", "question": "1 + 1?", "reference": "2"}])
    p["no_gold"] = write_lines(root / "no-gold.jsonl", [{"id": "t1", "question": "1 + 1?"}])
    p["questions"] = write_lines(root / "questions.jsonl", [{"id": "t1", "question": "1 + 1?"}])
    p["afile"] = put(root / "afile", "a file\n")
    p["link_to_parquet"] = root / "link.parquet"
    p["link_to_parquet"].symlink_to(p["parquet"])
    # saved datasets, broken four ways
    for name, state in (("hf_bad_state", b"{not json"), ("hf_no_files", b'{"_fingerprint": "x"}'),
                        ("hf_missing_file", b'{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}'),
                        ("hf_garbage_file", b'{"_data_files": [{"filename": "data.arrow"}]}')):
        folder = root / name
        folder.mkdir()
        (folder / "state.json").write_bytes(state)
        p[name] = folder
    (p["hf_garbage_file"] / "data.arrow").write_bytes(b"not arrow")
    # recipes and configs that are not what they should be
    p["recipe_bad_utf8"] = put(root / "bad-utf8.yaml", b"input: c.jsonl\ntask: gsm8k\n# caf\xe9\n")
    p["recipe_bad_yaml"] = put(root / "bad-yaml.yaml", "input: c.jsonl\ntask: [gsm8k\n")
    p["recipe_list"] = put(root / "list.yaml", "- input: c.jsonl\n")
    p["exemplars_bad_utf8"] = put(root / "exemplars.jsonl", b'{"question": "1 + 1?", "answer": "2"}\n'
                                                            b'{"question": "caf\xe9?", "answer": "1"}\n')
    p["train_config_bad_utf8"] = put(root / "train.yaml", b"lr: 0.001 # \xff\n")
    p["folder"] = root / "a-folder"
    p["folder"].mkdir()
    # models and adapters
    p["model"] = tiny_llama
    p["adapter"] = build_tiny_lora(tiny_llama, root / "adapter")
    p["other_model"] = build_tiny_llama(root / "other-model", hidden_size=48, intermediate_size=96)
    p["empty_model"] = root / "empty-model"
    p["empty_model"].mkdir()
    p["config_only"] = root / "config-only"
    p["config_only"].mkdir()
    shutil.copy(tiny_llama / "config.json", p["config_only"])
    p["pickled_model"] = root / "pickled-model"
    shutil.copytree(tiny_llama, p["pickled_model"], ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(load_file(tiny_llama / "model.safetensors"), p["pickled_model"] / "pytorch_model.bin")
    p["corrupt_model"] = root / "corrupt-model"
    shutil.copytree(tiny_llama, p["corrupt_model"])
    (p["corrupt_model"] / "model.safetensors").write_bytes(b"\x00" * 64)
    p["truncated_model"] = root / "truncated-model"
    shutil.copytree(tiny_llama, p["truncated_model"])
    weights = (tiny_llama / "model.safetensors").read_bytes()
    (p["truncated_model"] / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    p["pickled_adapter"] = root / "pickled-adapter"
    p["pickled_adapter"].mkdir()
    shutil.copy(p["adapter"] / "adapter_config.json", p["pickled_adapter"])
    torch.save(load_file(p["adapter"] / "adapter_model.safetensors"), p["pickled_adapter"] / "adapter_model.bin")
    p["broken_adapter"] = root / "broken-adapter"
    p["broken_adapter"].mkdir()
    (p["broken_adapter"] / "adapter_config.json").write_text("{")
    # a finished one-step run whose checkpoint a crash damaged
    p["run"] = root / "run"
    run_train(TrainConfig(data=str(p["parquet"]), model=str(tiny_llama), output=str(p["run"]), max_steps=1,
                          save_every=1, progress=False))
    checkpoint = next((p["run"] / "checkpoints").iterdir())
    (checkpoint / "trainable.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")
    return w


def recipe(tmp: Path, w: World, **keys: object) -> str:
    values = {"input": str(w.jsonl), "task": "gsm8k", "filters": ["majority_vote"], "output": str(tmp / "out"), **keys}
    path = tmp / "recipe.yaml"
    path.write_text(json.dumps(values))  # JSON is YAML
    return str(path)


def earlier_build(w: World, tmp: Path) -> Path:
    """``out/curated.parquet`` as an earlier build left it (no manifest, so the check below still bites)."""
    (tmp / "out").mkdir(exist_ok=True)
    return Path(shutil.copy(w.parquet, tmp / "out" / "curated.parquet"))


def model_recipe(tmp: Path, w: World, model: Path | str, **keys: object) -> str:
    return recipe(tmp, w, filters=[{"self_eval": {"model": str(model)}}], **keys)


def evaluate(w: World, tmp: Path, *extra: str, model: Path | str | None = None) -> list[str]:
    return ["eval", "--model", str(model or w.model), "--data", str(w.test_set), "--task", "gsm8k",
            "--strategy", "greedy", "--max-tokens", "4", "--output", str(tmp / "out"), *extra]


def train(w: World, tmp: Path, *extra: str, model: Path | str | None = None, data: Path | None = None) -> list[str]:
    return ["train", "--data", str(data or w.parquet), "--model", str(model or w.model), "--max-steps", "1",
            "--output", str(tmp / "out"), *extra]


def generate(w: World, tmp: Path, *extra: str, model: Path | str | None = None) -> list[str]:
    return ["generate", "--input", str(w.questions), "--task", "gsm8k", "--backend", "transformers",
            "--model", str(model or w.model), "--max-tokens", "4", "--output", str(tmp / "out"), *extra]


def export(source: Path | str, output: Path | str) -> list[str]:
    return ["export", str(source), "--format", "alpaca", "--output", str(output)]


Args = Callable[[World, Path], list[str]]
Text = Callable[[World, Path], str]


@dataclass(frozen=True)
class Case:
    args: Args
    culprit: Text
    """Text the error line must contain: the file, row or option at fault, and what is wrong."""
    untouched: Callable[[World, Path], list[Path]] = lambda w, tmp: [tmp / "out"]
    """Outputs that must not exist afterwards (a folder: no manifest.json or metrics.json in it)."""
    cuda: bool = False
    """Only where this machine has no CUDA device."""


CASES: dict[str, Case] = {
    # -- build: the input --
    "input invalid UTF-8 (JSONL)": Case(lambda w, t: ["build", recipe(t, w, input=str(w.bad_utf8))],
                                         lambda w, t: f"{w.bad_utf8}:3: not UTF-8 text"),
    "input invalid UTF-8 (Arrow)": Case(lambda w, t: ["build", recipe(t, w, input=str(w.bad_utf8_arrow))],
                                         lambda w, t: f"{w.bad_utf8_arrow}: row 2: column 'rationale' is not UTF-8"),
    "input invalid JSON": Case(lambda w, t: ["build", recipe(t, w, input=str(w.bad_json))],
                               lambda w, t: f"{w.bad_json}:2: invalid JSON"),
    "input missing a required column": Case(lambda w, t: ["build", recipe(t, w, input=str(w.no_rationale))],
                                            lambda w, t: f"{w.no_rationale}: missing required column 'rationale'"),
    "input null id": Case(lambda w, t: ["build", recipe(t, w, input=str(w.null_id))],
                          lambda w, t: f"{w.null_id}:2: column 'id' is null"),
    "input groups not contiguous": Case(lambda w, t: ["build", recipe(t, w, input=str(w.scattered))],
                                        lambda w, t: f"{w.scattered}: id 'q0' is not contiguous"),
    "input column of two types": Case(lambda w, t: ["build", recipe(t, w, input=str(w.mixed))],
                                      lambda w, t: f"{w.mixed}:2: column 'reference' is str here but float"),
    "input has a keep column": Case(lambda w, t: ["build", recipe(t, w, input=str(w.keep))],
                                    lambda w, t: f"{w.keep}: has a column 'keep', which the build writes"),
    "input empty": Case(lambda w, t: ["build", recipe(t, w, input=str(w.empty))], lambda w, t: f"{w.empty}: no rows"),
    "input missing": Case(lambda w, t: ["build", recipe(t, w, input=str(t / "nothing.jsonl"))],
                          lambda w, t: f"{t / 'nothing.jsonl'}: no such file"),
    "input unknown format": Case(lambda w, t: ["build", recipe(t, w, input=str(w.csv))],
                                 lambda w, t: f"{w.csv}: unknown format '.csv'"),
    "input not Parquet": Case(lambda w, t: ["build", recipe(t, w, input=str(w.garbage_parquet))],
                              lambda w, t: f"{w.garbage_parquet}: not a readable Parquet file"),
    "dataset bad state.json": Case(lambda w, t: ["build", recipe(t, w, input=str(w.hf_bad_state))],
                                   lambda w, t: f"{w.hf_bad_state / 'state.json'}: not valid JSON"),
    "dataset state.json lists no files": Case(lambda w, t: ["build", recipe(t, w, input=str(w.hf_no_files))],
                                              lambda w, t: f"{w.hf_no_files / 'state.json'}: no '_data_files' list"),
    "dataset data file missing": Case(lambda w, t: ["build", recipe(t, w, input=str(w.hf_missing_file))],
                                      lambda w, t: f"{w.hf_missing_file}: the data file 'data-00000-of-00001.arrow'"),
    "dataset data file not Arrow": Case(lambda w, t: ["build", recipe(t, w, input=str(w.hf_garbage_file))],
                                        lambda w, t: f"{w.hf_garbage_file / 'data.arrow'}: not an Arrow IPC file"),
    # -- build: the recipe and its options --
    "recipe invalid UTF-8": Case(lambda w, t: ["build", str(w.recipe_bad_utf8)],
                                 lambda w, t: f"{w.recipe_bad_utf8}:3: not UTF-8 text (byte 0xe9)"),
    "recipe invalid YAML": Case(lambda w, t: ["build", str(w.recipe_bad_yaml)],
                                lambda w, t: f"{w.recipe_bad_yaml}:3: invalid YAML"),
    "recipe is a folder": Case(lambda w, t: ["build", str(w.folder)], lambda w, t: f"{w.folder}: a folder, not a recipe"),
    "recipe missing": Case(lambda w, t: ["build", str(t / "none.yaml")],
                           lambda w, t: f"{t / 'none.yaml'}: no such recipe file"),
    "recipe not a mapping": Case(lambda w, t: ["build", str(w.recipe_list)],
                                 lambda w, t: f"{w.recipe_list}: a recipe is a mapping"),
    "recipe unknown key": Case(lambda w, t: ["build", recipe(t, w, inptu="x")], lambda w, t: "unknown key 'inptu'"),
    "--set a Python tag": Case(lambda w, t: ["build", recipe(t, w), "--set", "task=!!python/object/apply:os.system [ls]"],
                               lambda w, t: "--set task: invalid YAML (could not determine a constructor"),
    "--set unclosed list": Case(lambda w, t: ["build", recipe(t, w), "--set", "x=[unclosed"],
                                lambda w, t: "--set x: invalid YAML"),
    "--set without =": Case(lambda w, t: ["build", recipe(t, w), "--set", "filters"],
                            lambda w, t: "--set 'filters': expected KEY=VALUE"),
    "--set past the list": Case(lambda w, t: ["build", recipe(t, w), "--set", "filters.9.x=1"],
                                lambda w, t: "--set filters.9.x: '9' is not an index"),
    "filter options a list": Case(lambda w, t: ["build", recipe(t, w, filters=[{"majority_vote": [1, 2]}])],
                                  lambda w, t: "filters[0] (majority_vote): options must be a mapping"),
    "filter unknown": Case(lambda w, t: ["build", recipe(t, w, filters=["majority"])],
                           lambda w, t: "unknown filter 'majority'"),
    "filter option unknown": Case(lambda w, t: ["build", recipe(t, w, filters=[{"majority_vote": {"min_shar": 1}}])],
                                  lambda w, t: "min_shar"),
    "cache is a file": Case(lambda w, t: ["build", recipe(t, w, cache=str(w.afile))],
                            lambda w, t: f"{w.afile}: the score cache must be a folder"),
    "cache under a file": Case(lambda w, t: ["build", recipe(t, w, cache=str(w.afile / "cache"))],
                               lambda w, t: f"{w.afile} is a file, not a folder"),
    "device unknown": Case(lambda w, t: ["build", recipe(t, w), "--device", "tpu:3"],
                           lambda w, t: "device: 'tpu:3' is not a device"),
    "device cuda without CUDA": Case(lambda w, t: ["build", model_recipe(t, w, w.model), "--device", "cuda"],
                                     lambda w, t: "'cuda', but there is no CUDA device here", cuda=True),
    # -- build: where it writes --
    "output is a file": Case(lambda w, t: ["build", recipe(t, w), "--output", str(w.afile)],
                             lambda w, t: f"{w.afile}: is a file; the output must be a folder", lambda w, t: []),
    "output is /dev/null": Case(lambda w, t: ["build", recipe(t, w), "--output", os.devnull],
                                lambda w, t: f"{os.devnull}: is not a folder", lambda w, t: []),
    "output under a file": Case(lambda w, t: ["build", recipe(t, w), "--output", str(w.afile / "out")],
                                lambda w, t: f"{w.afile} is a file, not a folder", lambda w, t: []),
    "output is the input": Case(lambda w, t: ["build", recipe(t, w), "--output", str(w.jsonl)],
                                lambda w, t: f"{w.jsonl}: is this run's input", lambda w, t: []),
    "output holds the input": Case(lambda w, t: ["build", recipe(t, w, input=str(earlier_build(w, t)))],
                                   lambda w, t: f"{t / 'out' / 'curated.parquet'}: is this run's input"),
    # -- model and adapter folders (a model-backed filter, eval, train, generate) --
    "model folder missing": Case(lambda w, t: ["build", model_recipe(t, w, t / "nowhere")],
                                 lambda w, t: f"{t / 'nowhere'}: no such model folder"),
    "model folder empty": Case(lambda w, t: ["build", model_recipe(t, w, w.empty_model)],
                               lambda w, t: f"{w.empty_model}: an empty folder, not a model"),
    "model config only": Case(lambda w, t: ["build", model_recipe(t, w, w.config_only)],
                              lambda w, t: f"{w.config_only}: no weights (model.safetensors)"),
    "model corrupt safetensors": Case(lambda w, t: ["build", model_recipe(t, w, w.corrupt_model)],
                                      lambda w, t: f"{w.corrupt_model / 'model.safetensors'}: not a safetensors file"),
    "model truncated safetensors": Case(lambda w, t: ["build", model_recipe(t, w, w.truncated_model)],
                                        lambda w, t: f"{w.truncated_model / 'model.safetensors'}: truncated"),
    "model pickled (build)": Case(lambda w, t: ["build", model_recipe(t, w, w.pickled_model)],
                                  lambda w, t: f"{w.pickled_model}: holds pickled weights only (pytorch_model.bin)"),
    "model pickled (eval)": Case(lambda w, t: evaluate(w, t, model=w.pickled_model),
                                 lambda w, t: f"{w.pickled_model}: holds pickled weights only"),
    "model pickled (train)": Case(lambda w, t: train(w, t, model=w.pickled_model),
                                  lambda w, t: f"{w.pickled_model}: holds pickled weights only"),
    "model pickled (generate)": Case(lambda w, t: generate(w, t, model=w.pickled_model),
                                     lambda w, t: f"{w.pickled_model}: holds pickled weights only"),
    "model missing (generate)": Case(lambda w, t: generate(w, t, model=t / "nowhere"),
                                     lambda w, t: f"{t / 'nowhere'}: no such model folder"),
    "model missing (eval)": Case(lambda w, t: evaluate(w, t, model=t / "nowhere"),
                                 lambda w, t: f"{t / 'nowhere'}: no such model folder"),
    "model empty (train)": Case(lambda w, t: train(w, t, model=w.empty_model),
                                lambda w, t: f"{w.empty_model}: an empty folder"),
    "adapter missing": Case(lambda w, t: evaluate(w, t, "--adapter", str(t / "nowhere")),
                            lambda w, t: f"{t / 'nowhere'}: no such adapter folder"),
    "adapter broken config": Case(lambda w, t: evaluate(w, t, "--adapter", str(w.broken_adapter)),
                                  lambda w, t: f"{w.broken_adapter / 'adapter_config.json'}: not valid JSON"),
    "adapter pickled": Case(lambda w, t: evaluate(w, t, "--adapter", str(w.pickled_adapter)),
                            lambda w, t: f"{w.pickled_adapter}: holds pickled weights only (adapter_model.bin)"),
    "adapter for another base": Case(lambda w, t: evaluate(w, t, "--adapter", str(w.adapter), model=w.other_model),
                                     lambda w, t: f"{w.adapter}: its tensors do not fit this model's shapes"),
    "adapter is a model": Case(lambda w, t: evaluate(w, t, "--adapter", str(w.model)),
                               lambda w, t: f"{w.model}: not a PEFT adapter folder (no adapter_config.json)"),
    # -- eval --
    "eval --limit 0": Case(lambda w, t: evaluate(w, t, "--limit", "0"), lambda w, t: "'--limit': 0 is not in the range"),
    "eval --limit -1": Case(lambda w, t: evaluate(w, t, "--limit", "-1"),
                            lambda w, t: "'--limit': -1 is not in the range"),
    "eval --device unknown": Case(lambda w, t: evaluate(w, t, "--device", "tpu:3"),
                                  lambda w, t: "--device: 'tpu:3' is not a device"),
    "eval --device cuda without CUDA": Case(lambda w, t: evaluate(w, t, "--device", "cuda"),
                                            lambda w, t: "--device: 'cuda', but there is no CUDA device", cuda=True),
    "eval data without gold answers": Case(lambda w, t: [*evaluate(w, t)[:4], str(w.no_gold), *evaluate(w, t)[5:]],
                                           lambda w, t: f"{w.no_gold}: no gold answers"),
    "eval data invalid UTF-8": Case(lambda w, t: [*evaluate(w, t)[:4], str(w.bad_utf8), *evaluate(w, t)[5:]],
                                    lambda w, t: f"{w.bad_utf8}:3: not UTF-8 text"),
    "eval output is the data": Case(lambda w, t: [*evaluate(w, t)[:-2], "--output", str(w.test_set)],
                                    lambda w, t: f"{w.test_set}: is this run's input", lambda w, t: []),
    # -- train --
    "train resume from a damaged checkpoint": Case(
        lambda w, t: ["train", "--data", str(w.parquet), "--model", str(w.model), "--max-steps", "2",
                      "--save-every", "1", "--output", str(w.run), "--resume"],
        lambda w, t: "trainable.safetensors: not a safetensors file", lambda w, t: []),
    "train --device unknown": Case(lambda w, t: train(w, t, "--device", "tpu:3"),
                                   lambda w, t: "--device: 'tpu:3' is not a device"),
    "train --device cuda without CUDA": Case(lambda w, t: train(w, t, "--device", "cuda"),
                                             lambda w, t: "--device: 'cuda', but there is no CUDA device", cuda=True),
    "train data invalid UTF-8": Case(lambda w, t: train(w, t, data=w.bad_utf8), lambda w, t: f"{w.bad_utf8}:3: not UTF-8"),
    "train data negative weight": Case(lambda w, t: train(w, t, data=w.negative_weight),
                                       lambda w, t: f"{w.negative_weight}: row 4: column 'weight' must be a finite"),
    "train output is the data": Case(lambda w, t: [*train(w, t)[:-2], "--output", str(w.parquet)],
                                     lambda w, t: f"{w.parquet}: is this run's input", lambda w, t: []),
    "train config a folder": Case(lambda w, t: train(w, t, "--config", str(w.folder)),
                                  lambda w, t: f"'--config': File '{w.folder}' is a directory"),
    "train config invalid UTF-8": Case(lambda w, t: train(w, t, "--config", str(w.train_config_bad_utf8)),
                                       lambda w, t: f"{w.train_config_bad_utf8}:1: not UTF-8 text"),
    # -- generate --
    "generate output is a file": Case(lambda w, t: [*generate(w, t)[:-2], "--output", str(w.afile)],
                                      lambda w, t: f"{w.afile}: is a file", lambda w, t: []),
    "generate output is the input": Case(lambda w, t: [*generate(w, t)[:-2], "--output", str(w.questions)],
                                         lambda w, t: f"{w.questions}: is this run's input", lambda w, t: []),
    "generate input invalid UTF-8": Case(lambda w, t: [*generate(w, t)[:2], str(w.bad_utf8), *generate(w, t)[3:]],
                                         lambda w, t: f"{w.bad_utf8}:3: not UTF-8"),
    "generate exemplars invalid UTF-8": Case(
        lambda w, t: [*generate(w, t), "--prompt", "few-shot-cot", "--exemplars", str(w.exemplars_bad_utf8)],
        lambda w, t: f"{w.exemplars_bad_utf8}:2: not UTF-8 text (byte 0xe9)"),
    # -- export --
    "export over its input": Case(lambda w, t: export(t / "c.parquet", t / "c.parquet"),
                                  lambda w, t: f"{t / 'c.parquet'}: is this run's input", lambda w, t: []),
    "export over its input through a link": Case(lambda w, t: export(w.parquet, w.link_to_parquet),
                                                 lambda w, t: f"{w.link_to_parquet}: is this run's input ({w.parquet})",
                                                 lambda w, t: []),
    "export to /dev/null": Case(lambda w, t: export(w.parquet, os.devnull),
                                lambda w, t: f"{os.devnull}: not a regular file", lambda w, t: []),
    "export to a folder": Case(lambda w, t: export(w.parquet, w.folder),
                               lambda w, t: f"{w.folder}: is a folder", lambda w, t: []),
    "export under a file": Case(lambda w, t: export(w.parquet, w.afile / "x.jsonl"),
                                lambda w, t: f"{w.afile} is a file, not a folder", lambda w, t: []),
    "export input invalid UTF-8": Case(lambda w, t: export(w.bad_utf8, t / "x.jsonl"),
                                       lambda w, t: f"{w.bad_utf8}:3: not UTF-8", lambda w, t: [t / "x.jsonl"]),
    # -- compare --
    "compare output is a file": Case(lambda w, t: ["compare", recipe(t, w), "--output", str(w.afile)],
                                     lambda w, t: f"{w.afile}: is a file", lambda w, t: []),
    "compare recipe a folder": Case(lambda w, t: ["compare", str(w.folder), "--output", str(t / "out")],
                                    lambda w, t: f"{w.folder}: a folder, not a recipe"),
}


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes (the lock file's content is the holder's pid)."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.name != ".curator.lock"}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_complete(name, world, tmp_path, capsys, monkeypatch):
    case = CASES[name]
    if case.cuda:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device")
    shutil.copy(world.parquet, tmp_path / "c.parquet")
    monkeypatch.chdir(tmp_path)
    args = case.args(world, tmp_path)
    before = tree(world.root)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("curator: error: "), err
    assert case.culprit(world, tmp_path) in lines[0]
    assert tree(world.root) == before, "an input changed"
    for output in case.untouched(world, tmp_path):
        complete = [output / "manifest.json", output / "metrics.json"] if output.is_dir() else [output]
        assert not any(p.exists() for p in complete), f"{output} looks complete"
    leftovers = [p for p in tmp_path.rglob(".*.tmp")] + [p for p in world.root.rglob(".*.tmp")]
    assert not leftovers


def test_the_bar_is_met(world, tmp_path):
    """At least 40 kinds of bad input, through every command that writes."""
    commands = {case.args(world, tmp_path)[0] for case in CASES.values()}
    assert commands == {"build", "eval", "train", "generate", "export", "compare"}
    assert len(CASES) >= 40


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curator", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=300)


def assert_one_line(run: subprocess.CompletedProcess, culprit: str) -> None:
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert len(lines) == 1 and lines[0].startswith("curator: error: ") and culprit in lines[0], run.stderr


def test_unknown_plugin_name_in_curator_plugins_is_named():
    run = run_cli("plugins", env={"CURATOR_PLUGINS": "tasks,majority_vot"})
    assert_one_line(run, "CURATOR_PLUGINS names 'majority_vot', which is not an installed plugin")


def test_offline_hub_name_not_in_the_cache(world, tmp_path):
    path = model_recipe(tmp_path, world, "nobody/not-a-model")
    run = run_cli("build", path, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert_one_line(run, "nobody/not-a-model: cannot load the model (not in the local Hugging Face cache, "
                         "and HF_HUB_OFFLINE is set")
    assert not (tmp_path / "out" / "manifest.json").exists()


# -- file systems of their own: a full disk, a read-only folder -----------------------------------


def in_mount_namespace(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``script`` (bash) as root of a new user and mount namespace, where it may mount a tmpfs."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a file system of its own")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    runner = tmp_path / "run.sh"
    runner.write_text(script)
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "bash", str(runner)],
                          capture_output=True, text=True, timeout=300, env={**os.environ})


def incompressible_candidates(path: Path, rows: int) -> Path:
    """Rows whose rationales do not compress, so that a small disk really fills."""
    rng = __import__("random").Random(0)
    write_lines(path, [{"id": f"q{i // 4}", "question": "q", "sample": i % 4,
                        "rationale": "".join(rng.choice("abcdefghij0123456789") for _ in range(400)) + " The answer is 1."}
                       for i in range(rows)])
    return path


@pytest.mark.parametrize("where", ["output", "cache"])
def test_full_disk_is_one_line_and_leaves_no_temporaries(where, tmp_path):
    source = incompressible_candidates(tmp_path / "c.jsonl", 2000)  # ~800 kB of text, more as Arrow
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk if where == "output" else tmp_path / "out"
    cache = disk if where == "cache" else tmp_path / "cache"
    rpath = tmp_path / "r.yaml"
    # a percentile cut: a pass per step, over a working copy in the cache (a one-pass build keeps none)
    rpath.write_text(json.dumps({"input": str(source), "task": "gsm8k", "filters": [{"entropy": {"keep_percent": 50}}],
                                 "output": str(out), "cache": str(cache)}))
    run = in_mount_namespace(
        f"mount -t tmpfs -o size=256k tmpfs {disk} || exit 99\n"
        f"{sys.executable} -m curator build {rpath} --no-progress\n"
        f"echo rc=$? >&2; find {disk} -name '.*.tmp' >&2; ls -a {disk} >&2\n", tmp_path)
    if "rc=" not in run.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
    said, _, after = run.stderr.partition("rc=")
    lines = said.strip().splitlines()
    assert after.startswith("2"), run.stderr
    assert len(lines) == 1 and "No space left on device" in lines[0] and "Traceback" not in said, run.stderr
    listing = after.splitlines()[1:]
    assert not [name for name in listing if name.endswith(".tmp")], run.stderr
    assert "manifest.json" not in listing


def test_read_only_output_folder(tmp_path, world):
    ro = tmp_path / "ro"
    ro.mkdir()
    path = recipe(tmp_path, world, output=str(ro / "out"))
    run = in_mount_namespace(
        f"mount -t tmpfs -o ro,size=64k tmpfs {ro} || exit 99\n"
        f"{sys.executable} -m curator build {path} --no-progress\n", tmp_path)
    if run.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
    assert_one_line(run, f"{ro / 'out'}: cannot be used as the output folder: {ro} is not writable")
