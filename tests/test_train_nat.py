"""``curator train --objective nat`` end to end on a tiny Llama, and NAT folders in eval, generate, NCE and nce_kl."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402
from test_train_loop import rows  # noqa: E402  (the same arithmetic rows)

from curator.cli import main  # noqa: E402
from curator.errors import CuratorError  # noqa: E402
from curator.testing.tiny import build_tiny_llama  # noqa: E402
from curator.train import TrainConfig, run_train  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = dict(
    lr=1e-2,
    lora_alpha=32,
    batch_tokens=512,
    log_every=1,
    save_every=0,
    progress=False,
    warmup_ratio=0.0,
    nat_width=32,
)


def _write(path, records):
    pq.write_table(pa.Table.from_pylist(records), path)
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny base, positives, and a negative adapter trained on wrong rationales with the trainer itself."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("nat-train")
    base = str(build_tiny_llama(root / "base", initializer_range=0.2))
    positives = _write(root / "curated.parquet", rows(8))
    wrong = [
        dict(r, rationale=r["rationale"].replace("The answer is", "So it is 7 or")) for r in rows(8, seed=2)
    ]
    negatives = _write(root / "rejected.parquet", wrong)
    neg = root / "neg"
    run_train(TrainConfig(data=negatives, model=base, output=str(neg), max_steps=4, **SETTINGS))
    return root, base, positives, str(neg)


def _nat(setup, output, callbacks=(), **overrides):
    root, base, positives, neg = setup
    settings = dict(SETTINGS, max_steps=2, objective="nat", negative_adapter=neg)
    settings.update(overrides)
    return run_train(TrainConfig(data=positives, model=base, output=str(output), **settings), callbacks)


@pytest.fixture(scope="module")
def trained(setup):
    output = setup[0] / "nat"
    _nat(setup, output, max_steps=40)
    return output


def _greedy(model, tokenizer, prompt: str) -> list[int]:
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1] :].tolist()


def test_nat_learns_keeps_the_negative_branch_and_changes_generations(setup, trained):
    from curator.lm.loading import load_causal_lm

    root, base, _, neg = setup
    losses = [json.loads(line)["loss"] for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 40 and losses[-1] < 0.5 * losses[0]
    saved, negative = (
        load_file(trained / "nat_model.safetensors"),
        load_file(f"{neg}/adapter_model.safetensors"),
    )
    modules = json.loads((trained / "nat_config.json").read_text())["modules"]
    assert len(modules) == 14  # all-linear: every projection the negative adapter has
    for name in modules:  # the negative branch, bit for bit, after 40 steps
        assert torch.equal(saved[f"{name}.neg_A.weight"], negative[f"base_model.model.{name}.lora_A.weight"])
        assert torch.equal(saved[f"{name}.neg_B.weight"], negative[f"base_model.model.{name}.lora_B.weight"])
        assert (
            saved[f"{name}.unit_v2.weight"].abs().max() > 0 and saved[f"{name}.pos_B.weight"].abs().max() > 0
        )
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["outputs"][:2] == ["nat_config.json", "nat_model.safetensors"] and manifest["steps"] == 40
    assert (trained / "loss.png").stat().st_size > 0

    prompt = "Q: " + rows(8)[0]["question"] + "\nA:"
    plain, tuned = (
        load_causal_lm(base, device="cpu"),
        load_causal_lm(base, adapter=str(trained), device="cpu"),
    )
    before, after = (
        _greedy(plain.model, plain.tokenizer, prompt),
        _greedy(tuned.model, tuned.tokenizer, prompt),
    )
    assert before != after
    expected = tuned.tokenizer(" " + rows(8)[0]["rationale"], add_special_tokens=False)["input_ids"]
    assert after[:3] == expected[:3]


def test_gradients_reach_only_the_positive_branch_and_the_unit(setup):
    from curator.train.batching import collate
    from curator.train.data import read_training_table
    from curator.train.model import load_tokenizer
    from curator.train.objectives import load_objective

    root, base, positives, neg = setup
    config = TrainConfig(
        data=positives,
        model=base,
        output=str(root / "unused"),
        objective="nat",
        negative_adapter=neg,
        **SETTINGS,
    )
    objective = load_objective(config)
    model = objective.adapt(objective.load_model(base))
    tokenizer = load_tokenizer(config)
    samples, _ = objective.encode(read_training_table(positives, [], objective.columns), tokenizer)
    with torch.no_grad():  # past initialisation, where change2 = 0 would stop every other gradient
        for layer in model.layers().values():
            layer.unit_v2.weight.normal_(0, 0.1)
            layer.pos_B.weight.normal_(0, 0.1)
    model.train()
    objective.loss(model, collate(samples, packed=True, pad_id=0)).backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        n.split(".")[-2] in ("pos_A", "pos_B", "unit_q", "unit_k", "unit_v1", "unit_v2") for n in trainable
    )
    for name, p in model.named_parameters():
        if name in trainable:
            assert p.grad is not None and p.grad.abs().max() > 0, name
        else:
            assert p.grad is None, name


def test_interrupt_and_resume_gives_the_same_nat_folder(setup, tmp_path):
    settings = dict(max_steps=6, save_every=2, grad_accum=2, batch_tokens=256, lora_dropout=0.1, packing="on")
    _nat(setup, tmp_path / "straight", **settings)

    def interrupt(record):
        if record["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _nat(setup, tmp_path / "resumed", callbacks=[interrupt], **settings)
    with pytest.raises(CuratorError, match="already holds a training run"):
        _nat(setup, tmp_path / "resumed", **settings)
    with pytest.raises(CuratorError, match="differ from the checkpoint's: nat_width"):
        _nat(setup, tmp_path / "resumed", resume=True, **dict(settings, nat_width=16))
    _nat(setup, tmp_path / "resumed", resume=True, **settings)
    straight = load_file(tmp_path / "straight" / "nat_model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "nat_model.safetensors")
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_resume_refuses_a_negative_adapter_retrained_in_place(setup, tmp_path):
    import shutil

    root, base, _, neg = setup
    copy = tmp_path / "neg"
    shutil.copytree(neg, copy)
    _nat(setup, tmp_path / "run", negative_adapter=str(copy))
    weights = load_file(copy / "adapter_model.safetensors")
    from safetensors.torch import save_file

    save_file({k: v * 2 for k, v in weights.items()}, copy / "adapter_model.safetensors")
    with pytest.raises(CuratorError, match="negative_adapter_content"):
        _nat(setup, tmp_path / "run", max_steps=4, resume=True, negative_adapter=str(copy))


def test_cli_trains_nat_and_refuses_what_cannot_be(setup, tmp_path, capsys):
    root, base, positives, neg = setup
    out = tmp_path / "cli"
    main(["train", "--objective", "nat", "--negative-adapter", neg, "--data", positives, "--model", base,
          "--output", str(out), "--max-steps", "2", "--no-progress"])  # fmt: skip
    assert (out / "nat_model.safetensors").is_file() and "trained 2 steps" in capsys.readouterr().out
    for argv, message in [
        (["--objective", "nat", "--negative-adapter", neg, "--merge"], "cannot be merged into plain weights"),
        (["--objective", "nat"], "needs --negative-adapter"),
        (["--negative-adapter", neg], "is for objective 'nat'"),
        (["--objective", "nat", "--negative-adapter", str(root / "base")], "not a PEFT adapter folder"),
        (["--objective", "nat", "--negative-adapter", str(root / "nat")], "not a PEFT adapter folder"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--data", positives, "--model", base, "--output", str(tmp_path / "bad"), *argv])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and message in err and len(err.splitlines()) == 1, err


def test_a_nat_teacher_for_nce_and_eval_and_generate_with_a_nat_adapter(setup, trained, tmp_path):
    from curator.evaluate.run import EvalConfig, run_eval

    root, base, _, _ = setup
    path = _write(tmp_path / "nce.parquet", rows(4, nce_beta=0.3))
    result = run_train(TrainConfig(data=path, model=base, output=str(tmp_path / "nce"), objective="nce",
                                   teacher=str(trained), max_steps=2, **SETTINGS))  # fmt: skip
    assert result.steps == 2 and result.loss is not None and result.loss > 0

    test = tmp_path / "test.jsonl"
    test.write_text(
        "".join(json.dumps({"question": r["question"], "reference": "1"}) + "\n" for r in rows(2))
    )
    metrics = run_eval(EvalConfig(model=base, adapter=str(trained), data=str(test), task="gsm8k", strategy="greedy",
                                  max_tokens=8, output=str(tmp_path / "eval"), progress=False)).metrics  # fmt: skip
    assert metrics["questions"] == 2 and metrics["failed_requests"] == 0
    texts = pq.read_table(tmp_path / "eval" / "predictions.parquet")["candidate_text"].to_pylist()
    prompt_ids = [r["question"] for r in rows(2)]
    assert texts[0][0].startswith(" " + rows(8)[0]["rationale"][:4]), (
        texts,
        prompt_ids,
    )  # NAT's answer, not the base's
    with pytest.raises(CuratorError, match="runs on the transformers backend only"):
        EvalConfig(model=base, adapter=str(trained), data=str(test), task="gsm8k", strategy="greedy",
                   output="o", base_url="http://localhost:1/v1")  # fmt: skip

    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"id": "a", "question": rows(1)[0]["question"]}) + "\n")
    main(["generate", "--input", str(questions), "--output", str(tmp_path / "gen"), "--task", "gsm8k",
          "--backend", "transformers", "--model", base, "--adapter", str(trained), "--prompt", "few-shot-cot",
          "--max-tokens", "8", "--no-progress"])  # fmt: skip
    generated = pq.read_table(tmp_path / "gen" / "candidates.parquet")
    assert generated.num_rows == 1
    manifest = json.loads((tmp_path / "gen" / "manifest.json").read_text())
    assert manifest["settings"]["adapter"] == str(trained)
    from curator.generate import GenerateConfig

    for backend, message in [("vllm", "transformers backend only"), ("openai", "for local backends")]:
        with pytest.raises(CuratorError, match=message):
            GenerateConfig(
                input="q", output="o", task="gsm8k", model=base, backend=backend, adapter=str(trained)
            )
