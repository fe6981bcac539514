"""The ASC ranker: its loss against an unbatched forward pass, training through the CLI, and ranked voting."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator.errors import CuratorError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from curator.train.batching import collate  # noqa: E402
from curator.train.config import TrainConfig  # noqa: E402
from curator.train.data import TrainingTable  # noqa: E402
from curator.train.objectives import load_objective  # noqa: E402


def _rows(count: int, seed: int = 0) -> list[dict]:
    """Correct rationales do the sum; incorrect ones give up. Every seventh row never reached correctness."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        good = i % 2 == 0
        rows.append(
            {
                "id": f"q{i}",
                "question": f"Tom has {a} apples and buys {b} more. How many?",
                "rationale": f"Tom has {a} + {b} = {a + b}. The answer is {a + b}."
                if good
                else "I do not know.",
                "correct": None if i % 7 == 6 else good,
                "weight": 1.0 + (i % 3) / 2,
            }
        )
    return rows


def _objective(tiny_llama, tmp_path, name: str):
    config = TrainConfig(
        data=str(tmp_path / "unused"), model=str(tiny_llama), output=str(tmp_path / "o"), objective=name
    )
    return load_objective(config)


@pytest.mark.parametrize("name", ["ranker", "ranker-pairwise"])
def test_loss_matches_unbatched_forward(tiny_llama, tmp_path, name):
    objective = _objective(tiny_llama, tmp_path, name)
    model = objective.load_model(str(tiny_llama)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_llama)
    rows = _rows(9)
    table = pa.Table.from_pylist(rows)
    weights = np.array([r["weight"] for r in rows], dtype=np.float32)
    samples, _ = objective.encode(TrainingTable(table, weights, "x", len(rows), 0, 0), tokenizer)
    labelled = [r for r in rows if r["correct"] is not None]
    assert len(samples) == len(labelled) == 8
    batch = collate(samples, packed=False, pad_id=tokenizer.pad_token_id)
    assert batch.attention_mask is not None and (batch.attention_mask == 0).any()  # really padded
    with torch.no_grad():
        loss = objective.loss(model, batch).item()
        expected = 0.0
        for row in labelled:
            ids = tokenizer(row["question"], row["rationale"], return_tensors="pt")["input_ids"]
            s = 1 / (1 + math.exp(-model(input_ids=ids).logits[0, 0].item()))
            y = float(row["correct"])
            term = (s - y) ** 2 if name == "ranker" else y * (1 - s) ** 3 + (1 - y) * s**3
            expected += row["weight"] * term
    assert loss == pytest.approx(expected, rel=1e-5)


def test_labels_need_both_kinds(tiny_llama, tmp_path):
    objective = _objective(tiny_llama, tmp_path, "ranker")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_llama)
    rows = [r for r in _rows(12) if r["correct"]]
    table = pa.Table.from_pylist(rows)
    with pytest.raises(CuratorError, match="every labelled row is correct"):
        objective.encode(
            TrainingTable(table, np.ones(len(rows), np.float32), "x", len(rows), 0, 0), tokenizer
        )


@pytest.fixture(scope="module")
def trained_ranker(tiny_llama, tmp_path_factory):
    from curator.cli import main

    root = tmp_path_factory.mktemp("ranker")
    rows = _rows(48)
    pq.write_table(pa.Table.from_pylist(rows), root / "labelled.parquet")
    main(["train", "--objective", "ranker", "--data", str(root / "labelled.parquet"), "--model", str(tiny_llama),
          "--output", str(root / "ranker"), "--max-steps", "20", "--lr", "5e-3", "--batch-tokens", "768",
          "--merge", "--no-progress"])  # fmt: skip
    return root / "ranker", rows


def _score_by_hand(model_dir, question: str, rationale: str) -> float:
    """The merged classifier alone, one unpadded pair at a time."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        logit = model(**tokenizer(question, rationale, return_tensors="pt")).logits[0, 0].item()
    return 1 / (1 + math.exp(-logit))


def test_trained_ranker_separates_and_adapter_equals_merged(trained_ranker):
    from curator.evaluate.ranker import load_ranker, ranker_scores

    folder, rows = trained_ranker
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["data"]["samples"] == sum(r["correct"] is not None for r in rows)
    losses = [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
    questions, rationales = [r["question"] for r in rows], [r["rationale"] for r in rows]
    scores = ranker_scores(load_ranker(folder), questions, rationales)
    good = np.array([r["rationale"] != "I do not know." for r in rows])
    assert scores[good].min() > scores[~good].max()
    np.testing.assert_allclose(
        scores[:3],
        [_score_by_hand(folder / "merged", q, r) for q, r in zip(questions[:3], rationales[:3], strict=True)],
        atol=1e-5,
    )


def test_merged_ranker_is_a_reward_model(trained_ranker):
    from curator.testing import make_candidates, run_filter

    folder, rows = trained_ranker
    rationales = [r["rationale"] for r in rows[:6]]
    table = make_candidates([["1"] * 6], rationales=[rationales])
    result = run_filter("reward_model", table, model=str(folder / "merged"), keep_percent=50)
    logits = [
        math.log(s / (1 - s))
        for s in (_score_by_hand(folder / "merged", "Question 0?", r) for r in rationales)
    ]
    np.testing.assert_allclose(result["reward"].to_pylist(), logits, atol=1e-4)
    assert result["keep"].to_pylist() == [
        r != "I do not know." for r in rationales
    ]  # the 3 correct ones rank top


def test_ranked_eval_votes_with_the_rankers_scores(trained_ranker, tmp_path):
    from test_eval_run import LastNumber, Plugin

    from curator.evaluate.run import EvalConfig, run_eval
    from curator.plugins import registry_for

    folder, _ = trained_ranker
    question = "Tom has 3 apples and buys 4 more. How many?"
    candidates = [
        ("Tom has 3 + 4 = 7. The answer is 7.", 7),
        ("I do not know. 5", 5),
        ("I do not know. 5", 5),
    ]
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": question, "reference": "7"}) + "\n")
    (tmp_path / "script.json").write_text(
        json.dumps({f"Q: {question}\nA:": [[t, -1.0, 3] for t, _ in candidates]})
    )
    scores = [_score_by_hand(folder / "merged", question, text) for text, _ in candidates]
    registry = registry_for([Plugin()])
    for preset, (c0, c1) in {"sc": (1, 0), "score_sum": (0, 1), "asc": (1, 1)}.items():
        totals: dict[int, float] = {}
        for (_, answer), s in zip(candidates, scores, strict=True):
            totals[answer] = totals.get(answer, 0.0) + c0 + c1 * s
        expected = str(max(totals, key=lambda a: (totals[a], a == 7)))  # 7 is sampled first
        config = EvalConfig(model=str(tmp_path / "script.json"), data=str(tmp_path / "test.jsonl"), task=LastNumber.name,
                            strategy="ranked", n=3, ranker=str(folder), preset=preset, backend="scripted",
                            output=str(tmp_path / preset), progress=False)  # fmt: skip
        result = run_eval(config, registry=registry)
        predictions = pq.read_table(result.predictions).to_pylist()[0]
        assert predictions["prediction"] == expected, (preset, totals)
        np.testing.assert_allclose(predictions["candidate_ranker_score"], scores, atol=1e-5)
        assert result.metrics["coefficients"] == {"c0": c0, "c1": c1}


@pytest.fixture
def build_folder(tmp_path):
    """A finished correctness build of 24 candidates (half right) in tmp_path/out."""
    from curator.cli import main
    from curator.testing import make_candidates

    answers = [[str(q), str(q + 1)] * 2 for q in range(6)]
    table = make_candidates(answers, references=[str(q) for q in range(6)])
    pq.write_table(table, tmp_path / "candidates.parquet")
    (tmp_path / "recipe.yaml").write_text(
        "input: candidates.parquet\ntask: gsm8k\nfilters:\n  - correctness: {}\noutput: out/\nrejected_by_step: true\n"
    )
    main(["build", str(tmp_path / "recipe.yaml"), "--no-progress"])
    return tmp_path / "out"


def test_ranker_data_from_a_build_folder_or_several_files(tiny_llama, build_folder, tmp_path, capsys):
    """--data DIR reads curated and rejected rows; --data twice reads both files; one file alone is refused."""
    from curator.cli import main

    common = ["train", "--objective", "ranker", "--model", str(tiny_llama), "--max-steps", "1", "--no-progress"]
    main([*common, "--data", str(build_folder), "--output", str(tmp_path / "folder")])
    curated, rejected = str(build_folder / "curated.parquet"), str(build_folder / "rejected.parquet")
    main([*common, "--data", curated, "--data", rejected, "--output", str(tmp_path / "files")])
    folder = json.loads((tmp_path / "folder" / "manifest.json").read_text())["data"]
    files = json.loads((tmp_path / "files" / "manifest.json").read_text())["data"]
    assert folder["files"] == files["files"] == [curated, rejected]
    assert folder["samples"] == files["samples"] == 24 and folder["fingerprint"] == files["fingerprint"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--data", curated, "--output", str(tmp_path / "one")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "every labelled row is correct" in err and "build folder" in err

    # A language-model objective reads a build folder's curated rows only.
    main(["train", "--model", str(tiny_llama), "--max-steps", "1", "--no-progress", "--data", str(build_folder),
          "--output", str(tmp_path / "sft")])  # fmt: skip
    sft = json.loads((tmp_path / "sft" / "manifest.json").read_text())["data"]
    assert sft["files"] == [curated] and sft["samples"] == 12


def test_help_says_what_the_ranker_needs():
    from click.testing import CliRunner

    from curator.cli import cli

    text = " ".join(CliRunner().invoke(cli, ["train", "--help"]).output.split())
    assert "repeatable" in text and "rejected.parquet" in text and "'correct' label" in text


def test_long_candidates_get_their_questions_mean_score():
    from curator.evaluate.ranker import fill_unscored

    scores = np.array([0.2, np.nan, 0.6, np.nan, np.nan, 0.9])
    question = np.array([0, 0, 0, 1, 1, 2])
    # Question 0: the mean of 0.2 and 0.6; question 1 has no scored candidate: 1, as ASC.py sets it.
    np.testing.assert_allclose(fill_unscored(scores, question), [0.2, 0.4, 0.6, 1.0, 1.0, 0.9])


def test_ranked_eval_leaves_over_long_candidates_unscored(trained_ranker, tmp_path):
    from test_eval_run import Plugin

    from curator.evaluate.run import EvalConfig, run_eval
    from curator.plugins import registry_for

    folder, _ = trained_ranker
    question = "Tom has 3 apples and buys 4 more. How many?"
    texts = ["Tom has 3 + 4 = 7. The answer is 7.", "I do not know. 5", "long " * 300 + "so 5"]
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": question, "reference": "7"}) + "\n")
    (tmp_path / "script.json").write_text(json.dumps({f"Q: {question}\nA:": [[t, -1.0, 3] for t in texts]}))
    config = EvalConfig(model=str(tmp_path / "script.json"), data=str(tmp_path / "test.jsonl"), task="last_number",
                        strategy="ranked", n=3, ranker=str(folder), ranker_max_length=64, backend="scripted",
                        output=str(tmp_path / "out"), progress=False)  # fmt: skip
    result = run_eval(config, registry=registry_for([Plugin()]))
    scores = pq.read_table(result.predictions).to_pylist()[0]["candidate_ranker_score"]
    assert result.metrics["ranker_unscored"] == 1
    assert scores[2] == pytest.approx((scores[0] + scores[1]) / 2)
