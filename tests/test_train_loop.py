"""End to end on a tiny Llama: learning, PEFT output, weight 0, resume, CLI, NCE, merge."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from curator.cli import main
from curator.errors import CuratorError
from curator.testing.tiny import arithmetic_corpus, build_tiny_llama
from curator.train import TrainConfig, run_train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    # A wider initialisation than the default, so a frozen head lets LoRA reach low loss in few steps.
    return str(build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", initializer_range=0.2))


def rows(n: int, seed: int = 1, **columns) -> list[dict]:
    out = []
    for i, line in enumerate(arithmetic_corpus(n, seed=seed)):
        question, rationale = line.split("\nA: ")
        out.append({"id": f"q{i}", "question": question[3:], "rationale": rationale, **columns})
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "curated.parquet"
    pq.write_table(pa.Table.from_pylist(rows(8, weight=1.0)), path)
    return str(path)


def run(data, base, output, callbacks=(), **overrides):
    settings = dict(
        lr=1e-2, lora_alpha=32, batch_tokens=1024, log_every=1, save_every=0, progress=False, warmup_ratio=0.0
    )
    settings.update(overrides)
    return run_train(TrainConfig(data=str(data), model=base, output=str(output), **settings), callbacks)


def adapter(output) -> dict[str, torch.Tensor]:
    return load_file(f"{output}/adapter_model.safetensors")


def greedy(model, tokenizer, prompt: str) -> list[int]:
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="module")
def trained(data, base, tmp_path_factory):
    output = tmp_path_factory.mktemp("run") / "adapter"
    torch.set_num_threads(1)
    run(data, base, output, max_steps=40)
    return output


def test_loss_falls_and_the_adapter_changes_generations(trained, base):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 41))
    assert all({"step", "loss", "lr", "tokens_per_s"} <= r.keys() for r in records)
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    prompt = "Q: " + rows(8)[0]["question"] + "\nA:"
    before = greedy(model, tokenizer, prompt)
    tuned = PeftModel.from_pretrained(model, str(trained)).eval()
    after = greedy(tuned, tokenizer, prompt)
    assert before != after
    expected = tokenizer(" " + rows(8)[0]["rationale"], add_special_tokens=False)["input_ids"]
    assert after[:3] == expected[:3]  # memorised the start of its rationale

    config = json.loads((trained / "adapter_config.json").read_text())
    assert config["r"] == 16 and config["lora_alpha"] == 32 and config["peft_type"] == "LORA"
    assert (trained / "loss.png").stat().st_size > 0
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["steps"] == 40 and manifest["tokens_seen"] == sum(r["tokens"] for r in records[-1:])
    assert manifest["data"]["samples"] == 8 and len(manifest["data"]["fingerprint"]) == 32
    assert (
        manifest["config"]["lr"] == 1e-2 and "torch" in manifest["versions"] and manifest["wall_time_s"] > 0
    )


def test_a_weight_zero_row_changes_nothing(tmp_path, base):
    kept = rows(6)
    pq.write_table(pa.Table.from_pylist([dict(r, weight=1.0) for r in kept]), tmp_path / "a.parquet")
    extra = dict(rows(1, seed=9)[0], id="zero", weight=0.0)
    pq.write_table(
        pa.Table.from_pylist(
            [dict(r, weight=1.0) for r in kept[:3]] + [extra] + [dict(r, weight=1.0) for r in kept[3:]]
        ),
        tmp_path / "b.parquet",
    )
    run(tmp_path / "a.parquet", base, tmp_path / "a", max_steps=4, batch_tokens=256, lora_dropout=0.1)
    run(tmp_path / "b.parquet", base, tmp_path / "b", max_steps=4, batch_tokens=256, lora_dropout=0.1)
    a, b = adapter(tmp_path / "a"), adapter(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["data"]["rows_weight_zero"] == 1


def test_interrupt_and_resume_gives_the_same_adapter(tmp_path, data, base):
    settings = dict(
        max_steps=6, save_every=2, batch_tokens=256, grad_accum=2, lora_dropout=0.1, warmup_ratio=0.2
    )
    run(data, base, tmp_path / "straight", **settings)

    def interrupt(record):
        if record["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(data, base, tmp_path / "resumed", callbacks=[interrupt], **settings)
    assert (tmp_path / "resumed" / "checkpoints" / "step-00000002").is_dir()
    assert not (tmp_path / "resumed" / "adapter_model.safetensors").exists()
    with pytest.raises(CuratorError, match="already holds a training run"):
        run(data, base, tmp_path / "resumed", **settings)
    with pytest.raises(CuratorError, match="differ from the checkpoint's: lr"):
        run(data, base, tmp_path / "resumed", resume=True, **dict(settings, lr=5e-3))
    run(data, base, tmp_path / "resumed", resume=True, **settings)

    straight, resumed = adapter(tmp_path / "straight"), adapter(tmp_path / "resumed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]  # the record of step 3 written before the interrupt was dropped, then redone


def test_cli_trains_from_yaml_and_reports_bad_input(tmp_path, data, base, capsys):
    config = tmp_path / "train.yaml"
    config.write_text(f"data: {data}\nmodel: {base}\nlora_r: 4\nsave_every: 0\nprogress: false\n")
    out = tmp_path / "cli"
    main(
        [
            "train",
            "--config",
            str(config),
            "--output",
            str(out),
            "--max-steps",
            "2",
            "--lr",
            "1e-3",
            "--format",
            "fine-tune-cot",
            "--merge",
        ]
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["lora_r"] == 4 and manifest["config"]["format"] == "fine-tune-cot"
    assert manifest["steps"] == 2 and (out / "merged" / "config.json").exists()
    assert "trained 2 steps" in capsys.readouterr().out

    for argv, message in [
        (["--data", str(tmp_path / "none.parquet")], "no such file"),
        (["--data", data, "--where", "dropped_by=correctness"], "no column 'dropped_by'"),
        (["--data", data, "--objective", "nce"], "needs a teacher"),
        (["--data", data, "--model", str(tmp_path)], "not a model folder (no config.json)"),
        (["--data", data, "--batch-tokens", "100000000"], "lower --batch-tokens"),
    ]:
        full = ["train", "--model", base, "--output", str(tmp_path / "bad"), "--max-steps", "1", *argv]
        with pytest.raises(SystemExit) as exit_info:
            main(full)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_resume_with_more_steps_extends_a_finished_run(tmp_path, data, base):
    from curator.train.loop import learning_rate

    settings = dict(batch_tokens=256, warmup_ratio=0.2)
    straight: list[dict] = []
    run(data, base, tmp_path / "straight", callbacks=[straight.append], max_steps=8, **settings)
    run(data, base, tmp_path / "run", max_steps=4, **settings)
    four = adapter(tmp_path / "run")
    extended: list[dict] = []
    result = run(data, base, tmp_path / "run", callbacks=[extended.append], resume=True, max_steps=8, **settings)

    assert result.steps == 8 and [r["step"] for r in extended] == [5, 6, 7, 8]
    # The extra steps: the data an 8-step run sees there, on the schedule of an 8-step run.
    assert [r["tokens"] - e["tokens"] for r, e in zip(extended, straight[4:], strict=True)] == [0] * 4
    eight = TrainConfig(data="-", model="-", output="-", lr=1e-2, max_steps=8, **settings)
    assert [r["lr"] for r in extended] == [learning_rate(eight, s, 8) for s in range(4, 8)]
    assert [r["lr"] for r in straight[4:]] == [r["lr"] for r in extended]
    assert not all(torch.equal(four[k], v) for k, v in adapter(tmp_path / "run").items())
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["steps"] == 8 and manifest["resumed_from"].endswith("step-00000004")

    with pytest.raises(CuratorError, match="differ from the checkpoint's: lr"):
        run(data, base, tmp_path / "run", resume=True, max_steps=12, **dict(settings, lr=5e-3))
    with pytest.raises(CuratorError, match="at step 8, past the 6 steps this run is set to"):
        run(data, base, tmp_path / "run", resume=True, max_steps=6, **settings)

    one = run(data, base, tmp_path / "epochs", epochs=1, **settings)
    two = run(data, base, tmp_path / "epochs", resume=True, epochs=2, **settings)
    assert two.steps == 2 * one.steps and two.tokens == 2 * one.tokens  # a second pass over the same samples


def test_nce_objective_trains_against_a_teacher_adapter(tmp_path, trained, base):
    path = tmp_path / "nce.parquet"
    pq.write_table(pa.Table.from_pylist(rows(4, nce_beta=0.3, weight=0.8)), path)
    result = run(path, base, tmp_path / "nce", objective="nce", teacher=str(trained), max_steps=2)
    assert result.steps == 2 and result.loss is not None and result.loss > 0
    missing = tmp_path / "no_beta.parquet"
    pq.write_table(pa.Table.from_pylist(rows(2)), missing)
    with pytest.raises(CuratorError, match="missing column 'nce_beta'"):
        run(missing, base, tmp_path / "nce2", objective="nce", teacher=str(trained), max_steps=1)


def test_unset_batch_tokens_are_chosen_for_the_memory_and_kept_on_resume(tmp_path, data, base, monkeypatch, capsys):
    from transformers import AutoConfig

    import curator.train.memory as plan
    from curator.lm.memory import GiB, ModelShape, training_bytes

    shape = ModelShape.of(AutoConfig.from_pretrained(base))
    small = int(training_bytes(shape, 1500, width=64, checkpointing=False, lora_dropout=0.05) / plan.SAFETY)
    monkeypatch.setattr(plan, "available_memory", lambda device: small)
    run(data, base, tmp_path / "auto", batch_tokens=None, max_steps=2, save_every=1, progress=True)
    memory = json.loads((tmp_path / "auto" / "manifest.json").read_text())["memory"]
    assert memory["chosen"] and not memory["gradient_checkpointing"] and memory["available_bytes"] == small
    assert memory["grad_accum"] > 1 and memory["batch_tokens"] * memory["grad_accum"] >= plan.DEFAULT_STEP_TOKENS
    assert memory["peak_rss_bytes"] > 0
    assert "train: micro-batches of up to" in capsys.readouterr().err

    monkeypatch.setattr(plan, "available_memory", lambda device: 1024 * GiB)  # more memory now: same plan on resume
    run(data, base, tmp_path / "auto", batch_tokens=None, max_steps=2, save_every=1, resume=True, progress=True)
    again = json.loads((tmp_path / "auto" / "manifest.json").read_text())["memory"]
    assert {k: again[k] for k in ("batch_tokens", "grad_accum")} == {k: memory[k] for k in ("batch_tokens", "grad_accum")}
    assert "(from the checkpoint)" in capsys.readouterr().err


def test_training_stops_with_a_clear_error_when_memory_runs_low(tmp_path, data, base, monkeypatch):
    import curator.train.memory as plan
    from curator.lm.memory import GiB

    calls = iter([64 * GiB])  # planning sees plenty; the first check during training sees almost nothing
    monkeypatch.setattr(plan, "available_memory", lambda device: next(calls, 1 << 20))
    with pytest.raises(CuratorError, match=r"stopped at step 1: only 0.0 GiB of memory left .* then --resume"):
        run(data, base, tmp_path / "low", max_steps=2)
