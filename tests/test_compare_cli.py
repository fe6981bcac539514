"""``curator compare`` from the command line, with ``--train-eval`` on a tiny model.

One recipe keeps no rows: it is reported (no adapter, no accuracy) and the
comparison goes on. The base model and an adapter trained on every candidate
are evaluated beside the recipes, and the paired tests are recounted from
each model's predictions.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_report_numbers import md_rows, md_table

from curator.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gsm8k" / "candidates.jsonl"


def _recipes(root: Path) -> list[Path]:
    candidates = root / "candidates.jsonl"
    candidates.write_text("".join(EXAMPLE.read_text().splitlines(keepends=True)[:40]))  # 10 questions
    paths = []
    for name, step in (("vote", "majority_vote"), ("correct", "correctness"), ("none", "{entropy: {threshold: 0}}")):
        path = root / f"{name}.yaml"
        path.write_text(f"input: candidates.jsonl\ntask: gsm8k\nfilters: [{step}]\n")
        paths.append(path)
    return paths


@pytest.mark.filterwarnings("ignore:filter step 'entropy' dropped every row")
def test_train_eval_adds_accuracy_baselines_and_paired_tests(tiny_llama, tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from curator.report.significance import mcnemar_exact

    monkeypatch.setenv("CURATOR_CACHE", str(tmp_path / "cache"))
    recipes = _recipes(tmp_path)
    test = tmp_path / "test.jsonl"
    test.write_text(
        "".join(
            json.dumps(
                {"question": f"Kai has {a} eggs and buys {a} more. How many?", "reference": str(2 * a)}
            )
            + "\n"
            for a in (3, 5, 8)
        )
    )
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["compare", *map(str, recipes), "--output", str(out), "--train-eval", "--model", str(tiny_llama),
              "--eval-data", str(test), "--max-steps", "2", "--max-tokens", "8", "--no-progress"])  # fmt: skip
    assert not [w for w in caught if "no checkpoint to resume from" in str(w.message)]  # a first run is not a resume
    line = capsys.readouterr().out
    assert line.startswith("compared 3 recipes (vote ") and str(out / "report.html") in line
    assert "none 0/40 kept, no adapter (no rows kept); base model, accuracy " in line
    stored = json.loads((out / "report.json").read_text())
    recipes_json = {r["name"]: r for r in stored["recipes"]}
    markdown = (out / "report.md").read_text()
    table = md_table(markdown, "recipe")
    folders = {"base model": out / "base-model", "no filter": out / "no-filter",
               "vote": out / "recipes" / "vote", "correct": out / "recipes" / "correct"}  # fmt: skip
    answers = {}
    for name, folder in folders.items():
        predictions = pq.read_table(folder / "eval" / "predictions.parquet")
        answers[name] = dict(zip(predictions["id"].to_pylist(), predictions["correct"].to_pylist(), strict=True))
        metrics = json.loads((folder / "eval" / "metrics.json").read_text())
        accuracy = sum(answers[name].values()) / 3
        assert stored["accuracy"][name]["accuracy"] == pytest.approx(accuracy)
        low, high = metrics["ci95"]
        if name == "base model":
            assert metrics["config"]["adapter"] is None
            continue
        assert metrics["config"]["adapter"] == str(folder / "adapter")
        assert json.loads((folder / "adapter" / "manifest.json").read_text())["steps"] == 2
        # Two steps at the default --log-every 10: the first and the last are logged, and drawn.
        steps = [json.loads(x)["step"] for x in (folder / "adapter" / "metrics.jsonl").read_text().splitlines()]
        assert steps == [1, 2] and (folder / "adapter" / "loss.png").exists()
        assert table[name][-1] == f"{accuracy:.3f} [{low:.3f}, {high:.3f}]"
    assert recipes_json["vote"]["accuracy"]["accuracy"] == pytest.approx(sum(answers["vote"].values()) / 3)
    assert stored["no_filter"]["rows_kept"] == 40
    assert pq.read_table(out / "no-filter" / "curated.parquet").num_rows == 40  # trained on every candidate
    # The recipe that kept nothing: reported, not trained, and the comparison went on.
    assert table["none"] == ["0", "0", "0.000", "—", "0.000", "n/a (no rows kept)"]
    assert not (out / "recipes" / "none" / "adapter").exists()
    # McNemar's exact test between every pair of evaluated models, from their predictions.
    names = list(folders)
    rows = md_rows(markdown, "A | B")
    assert [r[:2] for r in rows] == [[a, b] for i, a in enumerate(names) for b in names[i + 1 :]]
    for a, b, questions, both, only_a, only_b, neither, p in rows:
        first, second = answers[a], answers[b]
        assert [int(questions), int(both), int(neither)] == [
            3, sum(first[q] and second[q] for q in first), sum(not first[q] and not second[q] for q in first)
        ]  # fmt: skip
        assert int(only_a) == sum(first[q] and not second[q] for q in first)
        assert int(only_b) == sum(second[q] and not first[q] for q in first)
        assert p == f"{mcnemar_exact(int(only_a), int(only_b)):.3g}"
    # The training section links each adapter folder and loss curve, relative to the report.
    runs = md_table(markdown, "adapter")
    assert runs["vote"][-2:] == ["[adapter](recipes/vote/adapter/)", "[loss.png](recipes/vote/adapter/loss.png)"]
    assert runs["no filter"][-2] == "[adapter](no-filter/adapter/)"
    assert md_table(markdown, "setting")["train: model"] == [str(tiny_llama)]
    curated = pq.read_table(out / "recipes" / "correct" / "curated.parquet")
    assert recipes_json["correct"]["rows_kept"] == curated.num_rows and recipes_json["correct"]["precision"] == 1.0


def test_train_eval_needs_a_model_and_test_set(tmp_path, capsys):
    recipes = _recipes(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *map(str, recipes), "--output", str(tmp_path / "out"), "--train-eval"])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err.strip()
        == "curator: error: compare --train-eval needs --model and --eval-data"
    )


def test_candidates_from_generate_bring_their_tokens_and_cost(stub, tmp_path, monkeypatch, capsys):
    """The real layout: ``curator generate`` (against a loopback stub) priced, then ``compare`` over its output."""
    pytest.importorskip("openai")
    monkeypatch.setenv("CURATOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server = stub(api_key="sk-test")
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(
        json.dumps({"question": f"Sam has {i} apples and buys {i + 3} more. How many?", "answer": f"#### {2 * i + 3}"})
        + "\n"
        for i in range(4)
    ))  # fmt: skip
    main(["generate", "--input", str(questions), "--output", str(tmp_path / "gen"), "--task", "gsm8k",
          "--backend", "openai", "--model", "stub-model", "--base-url", server.base_url, "--no-progress",
          "--n", "3", "--temperature", "0.7", "--price-input", "1.5", "--price-output", "4"])  # fmt: skip
    recipe = tmp_path / "vote.yaml"
    recipe.write_text("input: gen/candidates.parquet\ntask: gsm8k\nfilters: [majority_vote]\n")
    main(["compare", str(recipe), "--output", str(tmp_path / "out"), "--no-progress"])
    capsys.readouterr()
    usage = json.loads((tmp_path / "gen" / "manifest.json").read_text())["usage_all_runs"]
    cost = usage["prompt_tokens"] * 1.5 / 1e6 + usage["completion_tokens"] * 4 / 1e6
    markdown = (tmp_path / "out" / "report.md").read_text()
    facts = md_table(markdown, "generation")
    assert facts["model"] == ["stub-model"] and facts["questions"] == ["4"] and facts["rows"] == ["12"]
    assert facts["prompt tokens"] == [f"{usage['prompt_tokens']:,}"]
    assert facts["completion tokens"] == [f"{usage['completion_tokens']:,}"]
    assert facts["cost (USD)"] == [f"{cost:.4f}"]
    kept = pq.read_table(tmp_path / "out" / "recipes" / "vote" / "curated.parquet").num_rows
    per_row = md_table(markdown, "recipe | rows kept | completion tokens per kept row")
    assert per_row["vote"] == [str(kept), f"{usage['completion_tokens'] / kept:.1f}", f"{usage['cost_usd'] / kept:.6f}"]
