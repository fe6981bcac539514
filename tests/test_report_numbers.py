"""The comparison report's numbers, checked against plain-Python recomputation.

The outcomes are built by hand (as a build would write them: every row in
exactly one of curated/rejected, score columns null where a step was not
reached, rejected rows shuffled), so the report must line rows up itself.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curator.report import RecipeOutcome, write_report
from curator.report.analysis import precision_recall, sweep
from curator.report.outcomes import compare_outcomes
from curator.task import Task


class ExactTask(Task):
    name = "exact"

    def extract(self, text: str) -> str | None:
        return text.strip() or None


def synthetic_rows(questions: int = 30, samples: int = 6, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for q in range(questions):
        reference = str(q)
        pool = [reference, reference, str(q + 100), str(q + 200), None]
        answers = [rng.choice(pool) for _ in range(samples)]
        counts = Counter(a for a in answers if a is not None)
        top = max(counts.values()) if counts else 0
        vote = next((a for a in answers if a is not None and counts[a] == top), None)
        parsable = sum(counts.values())
        entropy = -sum(c / parsable * math.log(c / parsable) for c in counts.values()) if parsable else None
        for s, answer in enumerate(answers):
            rows.append(
                {
                    "id": f"q{q:03d}",
                    "sample": s,
                    "question": f"question {q}",
                    "rationale": f"reasoning {q}.{s}",
                    "answer": answer,
                    "reference": reference,
                    "vote_answer": vote,
                    "vote_share": top / parsable if parsable else None,
                    "entropy": entropy,
                    "ds": rng.uniform(1.0, 5.0),
                    "beta": rng.uniform(0.0, 0.99),
                }
            )
    return rows


def _percentile_cut(values: list[float], percent: float, lowest: bool) -> float:
    ordered = sorted(values, reverse=not lowest)
    count = max(1, min(len(ordered), math.ceil(len(ordered) * percent / 100)))
    return ordered[count - 1]


def make_outcome(
    name: str, rows: list[dict], steps: list[dict], columns: dict[str, list], keep, weight, dropped_by
) -> RecipeOutcome:
    """Split rows into curated/rejected tables with the score columns, rejected shuffled."""
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "sample": pa.array([r["sample"] for r in rows], pa.int32()),
            "question": [r["question"] for r in rows],
            "rationale": [r["rationale"] for r in rows],
            "answer": pa.array([r["answer"] for r in rows], pa.string()),
            "reference": [r["reference"] for r in rows],
            **{
                c: pa.array(v, pa.float64() if c != "vote_answer" else pa.string())
                for c, v in columns.items()
            },
            "keep": pa.array(keep, pa.bool_()),
            "weight": pa.array(weight, pa.float32()),
            "dropped_by": pa.array(dropped_by, pa.string()),
        }
    )
    mask = pa.array(keep)
    rejected = table.filter(pc.invert(mask))
    order = list(range(rejected.num_rows))
    random.Random(len(name)).shuffle(order)
    manifest = {"steps": steps, "rows_in": len(rows), "rows_out": int(sum(keep))}
    return RecipeOutcome(name, table.filter(mask), rejected.take(order), manifest)


def three_recipes(rows: list[dict]) -> list[RecipeOutcome]:
    """vote (majority vote); vote_ds (then DS weight, lowest 50 %); ent (entropy step named 'ent' + NCE weights)."""
    n = len(rows)
    agree = [r["answer"] is not None and r["answer"] == r["vote_answer"] for r in rows]
    vote_cols = {
        "vote_answer": [r["vote_answer"] for r in rows],
        "vote_share": [r["vote_share"] for r in rows],
    }
    vote_step = {
        "step": "majority_vote",
        "filter": "majority_vote",
        "columns": ["vote_answer", "vote_share"],
        "meaning": {"vote_answer": "categorical", "vote_share": "higher"},
        "rows_in": n,
        "rows_kept": sum(agree),
    }
    vote = make_outcome(
        "vote",
        rows,
        [vote_step],
        vote_cols,
        agree,
        [1.0] * n,
        [None if a else "majority_vote" for a in agree],
    )

    reached = [r["ds"] for r, a in zip(rows, agree, strict=True) if a]
    cut = _percentile_cut(reached, 50, lowest=True)
    ds_keep = [a and r["ds"] <= cut for r, a in zip(rows, agree, strict=True)]
    vote_ds = make_outcome(
        "vote_ds",
        rows,
        [
            vote_step,
            {
                "step": "ds_weight",
                "filter": "ds_weight",
                "columns": ["ds_loss", "ds_weight"],
                "meaning": {"ds_loss": None, "ds_weight": "lower"},
                "rows_in": sum(agree),
                "rows_kept": sum(ds_keep),
            },
        ],
        vote_cols
        | {
            "ds_loss": [r["ds"] / 2 if a else None for r, a in zip(rows, agree, strict=True)],
            "ds_weight": [r["ds"] if a else None for r, a in zip(rows, agree, strict=True)],
        },
        ds_keep,
        [1.0] * n,
        [
            None if k else ("majority_vote" if not a else "ds_weight")
            for k, a in zip(ds_keep, agree, strict=True)
        ],
    )

    low = [r["entropy"] is not None and r["entropy"] < 0.9 and a for r, a in zip(rows, agree, strict=True)]
    ent = make_outcome(
        "ent",
        rows,
        [
            {
                "step": "ent",
                "filter": "entropy",
                "columns": ["answer_entropy_ent"],
                "meaning": {"answer_entropy_ent": "lower"},
                "rows_in": n,
                "rows_kept": sum(low),
            },
            {
                "step": "nce_kl",
                "filter": "nce_kl",
                "columns": ["nce_beta"],
                "meaning": {"nce_beta": "higher"},
                "rows_in": sum(low),
                "rows_kept": sum(low),
            },
        ],
        {
            "answer_entropy_ent": [r["entropy"] for r in rows],
            "nce_beta": [r["beta"] if k else None for r, k in zip(rows, low, strict=True)],
        },
        low,
        [0.5 + r["beta"] if k else 1.0 for r, k in zip(rows, low, strict=True)],
        [None if k else "ent" for k in low],
    )
    return [vote, vote_ds, ent]


def _correct(row: dict) -> bool:
    return row["answer"] is not None and row["answer"] == row["reference"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    rows = synthetic_rows()
    outcomes = three_recipes(rows)
    out = tmp_path_factory.mktemp("report")
    files = write_report(
        outcomes, out, task=ExactTask(), accuracy={"vote": {"accuracy": 0.25, "ci95": [0.1, 0.4]}}
    )
    return rows, outcomes, files


def md_rows(markdown: str, first_header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header starts with ``first_header``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def md_table(markdown: str, first_header: str) -> dict[str, list[str]]:
    """The same table by first cell."""
    return {cells[0]: cells[1:] for cells in md_rows(markdown, first_header)}


def md_header(markdown: str, first_header: str) -> list[str]:
    line = next(x for x in markdown.splitlines() if x.startswith(f"| {first_header} |"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def _kept_keys(outcome: RecipeOutcome) -> set[tuple]:
    return {(r["id"], r["sample"]) for r in outcome.curated.select(["id", "sample"]).to_pylist()}


def test_summary_table_matches_recount(report):
    rows, outcomes, files = report
    weights = {o.name: o.curated["weight"].to_pylist() for o in outcomes}
    all_correct = sum(_correct(r) for r in rows)
    markdown = files.markdown.read_text()
    table = md_table(markdown, "recipe")
    assert md_header(markdown, "recipe")[4] == "mean weight"  # the NCE step sets weights
    stored = json.loads(files.json.read_text())
    recipes = {r["name"]: r for r in stored["recipes"]}
    kept_sets = {o.name: _kept_keys(o) for o in outcomes}
    kept_sets["no filter"] = {(r["id"], r["sample"]) for r in rows}
    weights["no filter"] = [1.0] * len(rows)
    for name, kept in kept_sets.items():
        kept_rows = [r for r in rows if (r["id"], r["sample"]) in kept]
        right = sum(_correct(r) for r in kept_rows)
        expected = {
            "rows_kept": len(kept_rows),
            "questions_kept": len({r["id"] for r in kept_rows}),
            "share_kept": len(kept_rows) / len(rows),
            "mean_weight": sum(weights[name]) / len(weights[name]),
            "precision": right / len(kept_rows),
            "recall": right / all_correct,
        }
        entry = stored["no_filter"] if name == "no filter" else recipes[name]
        for key, value in expected.items():
            assert entry[key] == pytest.approx(value, rel=1e-6), (name, key)
        assert table[name][:6] == [
            str(expected["rows_kept"]),
            str(expected["questions_kept"]),
            f"{expected['share_kept']:.3f}",
            f"{expected['mean_weight']:.3f}",
            f"{expected['precision']:.3f}",
            f"{expected['recall']:.3f}",
        ]
    assert list(table)[0] == "no filter" and table["no filter"][5] == "1.000"
    assert table["vote"][6] == "0.250 [0.100, 0.400]"
    assert table["ent"][6] == "—"
    assert recipes["vote"]["rows_in"] == len(rows) and recipes["vote"]["questions_in"] == 30
    steps = md_table(markdown, "recipe | steps (filter: rows kept / rows in)")
    assert steps["vote_ds"] == [
        f"majority_vote: {len(kept_sets['vote'])}/{len(rows)} → ds_weight: {len(kept_sets['vote_ds'])}/{len(kept_sets['vote'])}"
    ]


def test_mean_weight_is_shown_only_when_a_step_sets_weights(tmp_path):
    files = write_report(three_recipes(synthetic_rows())[:2], tmp_path, task=ExactTask())
    markdown = files.markdown.read_text()
    assert md_header(markdown, "recipe") == ["recipe", "rows kept", "questions kept", "share of input", "precision",
                                             "recall"]  # fmt: skip
    assert "No step sets weights" in markdown


def test_jaccard_matches_sets(report):
    rows, outcomes, files = report
    sets = {o.name: _kept_keys(o) for o in outcomes}
    stored = json.loads(files.json.read_text())["jaccard"]
    for i, a in enumerate(stored["recipes"]):
        for j, b in enumerate(stored["recipes"]):
            expected = len(sets[a] & sets[b]) / len(sets[a] | sets[b])
            assert stored["matrix"][i][j] == pytest.approx(expected)
    table = md_table(files.markdown.read_text(), "recipe | vote")
    assert (
        table["vote"][1] == f"{len(sets['vote'] & sets['vote_ds']) / len(sets['vote'] | sets['vote_ds']):.3f}"
    )


def test_score_sources_follow_the_manifests_meanings(report):
    rows, outcomes, files = report
    comparison = compare_outcomes(outcomes, ExactTask())
    found = {(s.column, s.meaning, tuple(s.recipes)) for s in comparison.sources}
    assert found == {
        ("vote_share", "higher", ("vote", "vote_ds")),
        ("ds_loss", None, ("vote_ds",)),
        ("ds_weight", "lower", ("vote_ds",)),
        ("answer_entropy", "lower", ("ent",)),  # the step named 'ent' suffixes its column; the label strips it
        ("nce_beta", "higher", ("ent",)),
    }
    assert comparison.unplotted == [("vote_answer", "majority_vote", "categorical")]
    ds_loss = next(s for s in comparison.sources if s.column == "ds_loss")
    assert sweep(ds_loss, comparison.correct, comparison.labelled) is None  # undeclared: distribution only
    assert "Not plotted, having no order: vote_answer (step majority_vote): categorical." in files.markdown.read_text()


def test_a_manifest_that_declares_nothing_gets_distributions_only(tmp_path):
    outcomes = three_recipes(synthetic_rows())
    for outcome in outcomes:
        for step in outcome.manifest["steps"]:
            step.pop("meaning", None)  # (the vote step is shared by two recipes)
    files = write_report(outcomes, tmp_path, task=ExactTask())
    names = {p.name for p in files.figures}
    assert sum(n.startswith("distribution-") for n in names) == 5
    assert not any(n.startswith(("intervals-", "precision-")) for n in names)


def _best_first(reached: list[dict], column: str, lower: bool) -> list[dict]:
    return sorted(reached, key=lambda r: r[column] if lower else -r[column])


def test_sweep_reproduces_percentile_selection_over_all_candidates(report):
    rows, outcomes, files = report
    comparison = compare_outcomes(outcomes, ExactTask())
    source = next(s for s in comparison.sources if s.column == "ds_weight")
    result = sweep(source, comparison.correct, comparison.labelled)
    reached = [r for r in rows if r["answer"] is not None and r["answer"] == r["vote_answer"]]
    assert len({r["ds"] for r in reached}) == len(reached)  # no ties: the filters' cut keeps the floor(N k) lowest
    all_correct = sum(map(_correct, rows))
    for k in (1, 37, 50, 100):
        chosen = _best_first(reached, "ds", lower=True)[: len(reached) * k // 100]
        assert result.rows_kept[k - 1] == len(chosen)
        assert result.kept_fraction[k - 1] == pytest.approx(len(chosen) / len(rows))  # one denominator: all rows
        assert result.recall[k - 1] == pytest.approx(sum(map(_correct, chosen)) / all_correct)
        if chosen:
            assert result.precision[k - 1] == pytest.approx(sum(map(_correct, chosen)) / len(chosen))
    # At the recipe's own k the sweep is what the recipe kept.
    vote_ds = outcomes[1].curated
    answers, references = vote_ds["answer"].to_pylist(), vote_ds["reference"].to_pylist()
    assert result.precision[49] == pytest.approx(np.mean([a == r for a, r in zip(answers, references, strict=True)]))
    # A weighting step's score sweeps too (its filter declares the higher end the one it weights up).
    beta = sweep(next(s for s in comparison.sources if s.column == "nce_beta"), comparison.correct, comparison.labelled)
    low = [r for r in rows if r["entropy"] is not None and r["entropy"] < 0.9 and r["answer"] == r["vote_answer"]]
    top = _best_first(low, "beta", lower=False)[: len(low) * 40 // 100]
    assert beta.precision[39] == pytest.approx(sum(map(_correct, top)) / len(top))
    table = md_table(files.markdown.read_text(), "score")
    base = f"{all_correct / len(rows):.3f} ({len(rows)})"
    assert table["no filter (keeps every row)"] == [str(len(rows)), *[base] * 6]
    assert table["ds_weight in vote_ds"][0] == str(len(reached))
    chosen = _best_first(reached, "ds", lower=True)[: len(reached) * 10 // 100]
    assert table["ds_weight in vote_ds"][1] == f"{sum(map(_correct, chosen)) / len(chosen):.3f} ({len(chosen)})"


def test_sweep_counts_rows_tied_at_the_cut_by_the_share_kept(report):
    rows, outcomes, files = report
    comparison = compare_outcomes(outcomes, ExactTask())
    source = next(s for s in comparison.sources if s.column == "vote_share")
    result = sweep(source, comparison.correct, comparison.labelled)
    reached = [r for r in rows if r["vote_share"] is not None]
    table = md_table(files.markdown.read_text(), "score")["vote_share (step majority_vote) in vote, vote_ds"]
    split_seen = False
    for column, k in enumerate((10, 20, 40, 60, 80, 100), start=1):
        target = len(reached) * k // 100
        ordered = _best_first(reached, "vote_share", lower=False)
        cut = ordered[target - 1]["vote_share"]
        better = [r for r in reached if r["vote_share"] > cut]
        tied = [r for r in reached if r["vote_share"] == cut]
        tied_kept = target - len(better)
        share = tied_kept / len(tied)
        expected = (sum(map(_correct, better)) + share * sum(map(_correct, tied))) / target
        assert result.precision[k - 1] == pytest.approx(expected)
        assert result.tied_at_cut[k - 1] == len(tied) and result.tied_kept[k - 1] == tied_kept
        ties = f"; {tied_kept} of {len(tied)} tied" if 0 < tied_kept < len(tied) else ""
        split_seen |= bool(ties)
        assert table[column] == f"{expected:.3f} ({target}{ties})"
    assert split_seen  # vote shares are coarse: some cut falls inside a run of ties


def _average_precision(reached: list[dict], column: str, lower: bool) -> tuple[list, float]:
    """Plain Python: thresholds best first, tied rows together; AP = sum of recall steps times precision."""
    values = sorted({r[column] for r in reached}, reverse=not lower)
    correct_reached = sum(map(_correct, reached))
    points, previous, average = [], 0.0, 0.0
    for value in values:
        taken = [r for r in reached if (r[column] <= value if lower else r[column] >= value)]
        right = sum(map(_correct, taken))
        precision, recall = right / len(taken), right / correct_reached
        average += (recall - previous) * precision
        previous = recall
        points.append((value, precision, right))
    return points, average


def test_precision_recall_matches_recount(report):
    rows, outcomes, files = report
    comparison = compare_outcomes(outcomes, ExactTask())
    all_correct = sum(map(_correct, rows))
    table = md_table(files.markdown.read_text(), "score | rows reaching | correct among them")
    assert table["no filter (every row)"] == [str(len(rows)), str(all_correct), f"{all_correct / len(rows):.3f}", "—"]
    stored = {(s["column"], s["step"]): s for s in json.loads(files.json.read_text())["scores"]}
    for column, key, lower, label in (
        ("ds_weight", "ds", True, "ds_weight in vote_ds"),
        ("vote_share", "vote_share", False, "vote_share (step majority_vote) in vote, vote_ds"),
        ("answer_entropy", "entropy", True, "answer_entropy (step ent) in ent"),
    ):
        source = next(s for s in comparison.sources if s.column == column)
        curve = precision_recall(source, comparison.correct, comparison.labelled)
        reached = [r for r in rows if r[key] is not None and (column != "ds_weight" or r["answer"] == r["vote_answer"])]
        points, average = _average_precision(reached, key, lower)
        assert curve.thresholds.tolist() == pytest.approx([p[0] for p in points])
        assert curve.precision.tolist() == pytest.approx([p[1] for p in points])
        assert curve.recall.tolist() == pytest.approx([p[2] / all_correct for p in points])
        assert curve.average_precision == pytest.approx(average)
        correct_reached = sum(map(_correct, reached))
        assert table[label] == [str(len(reached)), str(correct_reached), f"{correct_reached / len(reached):.3f}",
                                f"{average:.3f}"]  # fmt: skip
        assert stored[(column, source.step)]["average_precision"] == pytest.approx(average)


def test_interval_table_matches_manual_bins(report):
    rows, _, files = report
    entropies = [r["entropy"] for r in rows if r["entropy"] is not None]
    lo, hi = min(entropies), max(entropies)
    table = md_table(files.markdown.read_text(), "answer_entropy interval")
    assert len(table) == 10
    for i, (interval, cells) in enumerate(table.items()):
        left, right = lo + (hi - lo) * i / 10, lo + (hi - lo) * (i + 1) / 10
        inside = [
            r
            for r in rows
            if r["entropy"] is not None
            and left <= r["entropy"]
            and (r["entropy"] < right or (i == 9 and r["entropy"] <= right))
        ]
        assert interval == f"[{left:.3f}, {right:.3f}]"
        assert cells[:2] == [str(len(inside)), str(sum(map(_correct, inside)))]


def test_figures_written_and_linked(report):
    _, _, files = report
    markdown = files.markdown.read_text()
    html = files.html.read_text()
    names = {p.name for p in files.figures}
    assert {"jaccard.png", "precision-sweep.png", "precision-recall.png"} <= names
    assert sum(n.startswith("distribution-") for n in names) == 5
    assert sum(n.startswith("intervals-") for n in names) == 4  # every ordered score: 2 kept-high, 2 kept-low
    for path in files.figures:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](figures/{path.name})" in markdown
    assert html.count("<img ") == len(files.figures) and 'src="data:image/png;base64,' in html
    assert "figures/" not in html  # self-contained


def test_without_references_reports_no_precision(tmp_path):
    rows = synthetic_rows(questions=5)
    for row in rows:
        row["reference"] = None
    outcomes = three_recipes(rows)
    files = write_report(outcomes, tmp_path, task=ExactTask())
    stored = json.loads(files.json.read_text())["recipes"]
    assert all(r["precision"] is None and r["recall"] is None for r in stored)
    assert not any(p.name.startswith(("intervals-", "precision-")) for p in files.figures)


def test_different_candidates_are_refused(tmp_path):
    from curator.errors import CuratorError

    first = three_recipes(synthetic_rows(questions=4))[0]
    other = three_recipes(synthetic_rows(questions=5))[0]
    other.name = "other"
    with pytest.raises(CuratorError, match="recipe 'other' was built over different candidates than 'vote'"):
        write_report([first, other], tmp_path, task=ExactTask())
