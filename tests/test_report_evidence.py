"""The report's evidence beyond the recipe table, each number recounted in plain Python.

Accuracy beside the base model and McNemar's exact test between models, example
rationales (HTML-escaped), the generation's tokens and cost, and the training
runs' settings, adapters and loss curves.
"""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_report_numbers import ExactTask, md_rows, md_table, synthetic_rows, three_recipes

from curator.report import write_report
from curator.report.significance import mcnemar_exact
from curator.train.plot import plot_loss


def _binomial_two_sided(b: int, c: int) -> float:
    """Exact two-sided sign test by enumerating every split of the b + c discordant questions."""
    probabilities = [Fraction(1)]
    for _ in range(b + c):  # Pascal's triangle, halved each step: P(X = k) for X ~ Binomial(n, 1/2)
        probabilities = [(x + y) / 2 for x, y in zip([0, *probabilities], [*probabilities, 0], strict=True)]
    observed = probabilities[min(b, c)]
    return float(min(Fraction(1), sum(p for p in probabilities if p <= observed)))


@pytest.mark.parametrize("b, c", [(0, 0), (1, 5), (0, 6), (2, 10), (7, 7), (13, 4), (40, 61)])
def test_mcnemar_exact_is_the_binomial_sign_test(b, c):
    assert mcnemar_exact(b, c) == pytest.approx(_binomial_two_sided(b, c), rel=1e-12)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


def test_mcnemar_exact_known_values():
    assert mcnemar_exact(1, 5) == pytest.approx(2 * (1 + 6) / 64)
    assert mcnemar_exact(2, 10) == pytest.approx(158 / 4096)
    assert mcnemar_exact(0, 0) == 1.0


def _predictions(path: Path, right: list[bool]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": [f"t{i}" for i in range(len(right))], "correct": right}), path)
    return str(path)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Four models on 40 test questions, each with predictions and (but the base model) an adapter."""
    out = tmp_path_factory.mktemp("evaluated")
    rng = random.Random(3)
    answers = {
        "base model": [rng.random() < 0.2 for _ in range(40)],
        "no filter": [rng.random() < 0.4 for _ in range(40)],
        "vote": [rng.random() < 0.6 for _ in range(40)],
        "vote_ds": [rng.random() < 0.55 for _ in range(40)],
    }
    accuracy = {}
    for name, right in answers.items():
        folder = out / "models" / name.replace(" ", "-")
        entry = {"accuracy": sum(right) / 40, "ci95": [0.0, 1.0], "correct": sum(right), "questions": 40,
                 "predictions": _predictions(folder / "eval" / "predictions.parquet", right), "adapter": None}  # fmt: skip
        (folder / "eval" / "metrics.json").write_text(
            json.dumps({"config": {"model": "tiny", "data": "test.jsonl", "strategy": "greedy", "n": None}})
        )
        if name != "base model":
            adapter = folder / "adapter"
            adapter.mkdir()
            (adapter / "metrics.jsonl").write_text(json.dumps({"step": 2, "loss": 1.5, "lr": 1e-4}) + "\n")
            assert plot_loss(adapter / "metrics.jsonl", adapter / "loss.png")
            config = {"model": "tiny", "lora_r": 8, "lr": 1e-4 if name != "vote_ds" else 2e-4, "epochs": 1}
            (adapter / "manifest.json").write_text(json.dumps({
                "config": config, "data": {"samples": 10 + len(name)}, "steps": 2, "tokens_seen": 300,
                "final_loss": 1.5, "wall_time_s": 0.5,
            }))  # fmt: skip
            entry["adapter"] = str(adapter)
        accuracy[name] = entry
    accuracy["ent"] = {"accuracy": None, "skipped": "no rows kept: no adapter trained"}
    files = write_report(three_recipes(synthetic_rows()), out / "report", task=ExactTask(), accuracy=accuracy)
    return answers, accuracy, files


def test_paired_tests_recount(evaluated):
    answers, _, files = evaluated
    rows = md_rows(files.markdown.read_text(), "A | B")
    stored = json.loads(files.json.read_text())["paired_tests"]
    names = list(answers)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    assert [(t["first"], t["second"]) for t in stored] == pairs  # the skipped recipe has no predictions
    for (a, b), cells, entry in zip(pairs, rows, stored, strict=True):
        both = sum(x and y for x, y in zip(answers[a], answers[b], strict=True))
        only_a = sum(x and not y for x, y in zip(answers[a], answers[b], strict=True))
        only_b = sum(y and not x for x, y in zip(answers[a], answers[b], strict=True))
        neither = 40 - both - only_a - only_b
        p = _binomial_two_sided(only_a, only_b)
        assert entry["p_value"] == pytest.approx(p)
        assert cells == [a, b, "40", str(both), str(only_a), str(only_b), str(neither), f"{p:.3g}"]


def test_accuracy_beside_the_base_model(evaluated):
    answers, _, files = evaluated
    markdown = files.markdown.read_text()
    table = md_table(markdown, "model")
    base = sum(answers["base model"]) / 40
    for name, right in answers.items():
        accuracy = sum(right) / 40
        cells = table[name]
        assert cells[1] == f"{accuracy:.3f} [0.000, 1.000]" and cells[2] == f"{sum(right)}/40"
        if name == "base model":
            assert cells[3:] == ["—", "—"]
        else:
            b = sum(y and not x for x, y in zip(right, answers["base model"], strict=True))
            c = sum(x and not y for x, y in zip(right, answers["base model"], strict=True))
            assert cells[3:] == [f"{accuracy - base:+.3f}", f"{_binomial_two_sided(b, c):.3g}"]
    assert table["ent"][:2] == ["nothing: no rows kept", "n/a (no rows kept)"]
    recipes = md_table(markdown, "recipe")
    assert recipes["ent"][-1] == "n/a (no rows kept)"
    assert recipes["no filter"][-1] == f"{sum(answers['no filter']) / 40:.3f} [0.000, 1.000]"


def test_training_settings_adapters_and_loss_curves(evaluated):
    _, accuracy, files = evaluated
    markdown, html = files.markdown.read_text(), files.html.read_text()
    settings = md_table(markdown, "setting")
    assert settings["train: lora_r"] == ["8"]
    assert settings["train: lr"] == ["0.0001 / 0.0001 / 0.0002"]  # runs that differ are listed, in order
    assert settings["eval: strategy"] == ["greedy"]
    runs = md_table(markdown, "adapter")
    assert list(runs) == ["no filter", "vote", "vote_ds"]
    for name, cells in runs.items():
        assert cells[:5] == [str(10 + len(name)), "2", "300", "1.5000", "0.5"]
        folder = f"../models/{name.replace(' ', '-')}/adapter"
        assert cells[5:] == [f"[adapter]({folder}/)", f"[loss.png]({folder}/loss.png)"]
        assert f'<a href="{folder}/loss.png">loss.png</a>' in html
    loss_figures = sorted(p.name for p in files.figures if p.name.startswith("loss-"))
    assert loss_figures == ["loss-no_filter.png", "loss-vote.png", "loss-vote_ds.png"]
    assert (files.markdown.parent / "figures" / "loss-vote.png").read_bytes() == (
        Path(accuracy["vote"]["adapter"]) / "loss.png"
    ).read_bytes()


def test_examples_show_kept_and_dropped_rows_escaped(tmp_path):
    rows = synthetic_rows()
    reached = [r for r in rows if r["answer"] is not None and r["answer"] == r["vote_answer"]]
    best = min(reached, key=lambda r: r["ds"])
    best["rationale"] = "<script>alert('x')</script> a | b & c\nsecond line"
    outcomes = three_recipes(rows)
    files = write_report(outcomes, tmp_path, task=ExactTask())
    html, markdown = files.html.read_text(), files.markdown.read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; a | b &amp; c<br>second line" in html
    assert "&lt;script&gt;alert('x')&lt;/script&gt; a \\| b &amp; c<br>second line" in markdown
    block = md_rows(markdown, "where | ds_weight")
    kept_keys = {(r["id"], r["sample"]) for r in outcomes[1].curated.select(["id", "sample"]).to_pylist()}
    kept = sorted((r for r in reached if (r["id"], r["sample"]) in kept_keys), key=lambda r: r["ds"])
    dropped = sorted((r for r in reached if (r["id"], r["sample"]) not in kept_keys), key=lambda r: r["ds"])

    def distinct(candidates: list[dict]) -> list[dict]:
        chosen: list[dict] = []
        for r in candidates:
            if r["id"] not in {c["id"] for c in chosen}:
                chosen.append(r)
        return chosen[:2]

    expected = [("kept, best score", r) for r in distinct(kept)]
    expected += [("kept, worst score", r) for r in sorted(distinct(kept[::-1]), key=lambda r: r["ds"])]
    expected += [("dropped, best score", r) for r in distinct(dropped)]
    expected += [("dropped, worst score", r) for r in sorted(distinct(dropped[::-1]), key=lambda r: r["ds"])]
    assert [(cells[0], cells[1], cells[2], cells[4], cells[5]) for cells in block] == [
        (role, f"{r['ds']:.4g}", "yes" if role.startswith("kept") else "no", r["answer"], r["reference"])
        for role, r in expected
    ]
    assert block[0][6] == best["question"]


def test_generation_tokens_and_cost_per_kept_row(tmp_path):
    candidates = tmp_path / "gen" / "candidates.parquet"
    candidates.parent.mkdir()
    manifest = {
        "command": "generate",
        "settings": {"model": "teacher-7b", "backend": "openai", "prompt": "few-shot-cot", "n": 6, "temperature": 1.1},
        "counts": {"questions": 30, "rows": 180, "failed": 0},
        "usage": {"requests": 10, "prompt_tokens": 1, "completion_tokens": 1},
        "usage_all_runs": {"requests": 30, "prompt_tokens": 45_000, "completion_tokens": 27_000, "cost_usd": 0.1242},
        "outputs": {"candidates": "candidates.parquet", "failures": "failures.jsonl"},
    }  # fmt: skip
    (candidates.parent / "manifest.json").write_text(json.dumps(manifest))
    outcomes = three_recipes(synthetic_rows())[:2]  # two recipes are enough, and fewer figures to draw
    for outcome in outcomes:
        outcome.manifest = {**outcome.manifest, "input": {"path": str(candidates)}}
    files = write_report(outcomes, tmp_path / "report", task=ExactTask())
    markdown = files.markdown.read_text()
    facts = md_table(markdown, "generation")
    assert facts["model"] == ["teacher-7b"] and facts["n"] == ["6"]
    assert facts["prompt tokens"] == ["45,000"] and facts["completion tokens"] == ["27,000"]
    assert facts["cost (USD)"] == ["0.1242"]
    per_row = md_table(markdown, "recipe | rows kept | completion tokens per kept row")
    assert per_row["no filter"] == ["180", f"{27_000 / 180:.1f}", f"{0.1242 / 180:.6f}"]
    for outcome in outcomes:
        kept = outcome.curated.num_rows
        assert per_row[outcome.name] == [str(kept), f"{27_000 / kept:.1f}", f"{0.1242 / kept:.6f}"]
    assert json.loads(files.json.read_text())["generation"]["usage"]["cost_usd"] == 0.1242
    # Candidates that generate did not write (another file in its folder) get no such section.
    outcomes[0].manifest = {**outcomes[0].manifest, "input": {"path": str(candidates.parent / "other.parquet")}}
    files = write_report(outcomes, tmp_path / "report2", task=ExactTask())
    assert "## Candidates" not in files.markdown.read_text()
