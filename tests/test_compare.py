"""``curator compare`` end to end on the shipped GSM8K sample (real GPT-3 rationales).

Four recipes over the same 1,200 candidates; the report's numbers are
recomputed here in plain Python from the build outputs, and the score cache
must have scored each shared step once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curator import Task, hookimpl
from curator.plugins import registry_for
from curator.report import CompareConfig
from curator.report.compare import recipe_names, run_compare

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gsm8k" / "candidates.jsonl"


class LastNumber(Task):
    """A deliberately simple parser (the last integer), so this test does not depend on the task plugins."""

    name = "last_number"

    def extract(self, text: str) -> str | None:
        numbers = re.findall(r"-?\d+", text.replace(",", ""))
        return numbers[-1] if numbers else None


class TaskPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(LastNumber())


RECIPES = {
    "vote": ["majority_vote: {}"],
    "vote_strict": ["majority_vote: {min_share: 0.75}"],
    "entropy": ["entropy: {threshold: 0.7}"],
    "entropy_half": ["entropy: {keep_percent: 50}"],
    "correct": ["correctness: {}"],
}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    paths = []
    for name, steps in RECIPES.items():
        path = root / f"{name}.yaml"
        filters = "\n".join(f"  - {s}" for s in steps)
        path.write_text(
            f"input: {EXAMPLE}\ntask: last_number\ncache: {root / 'cache'}\nfilters:\n{filters}\n"
        )
        paths.append(path)
    registry = registry_for([TaskPlugin()], entry_points_too=True)
    result = run_compare(CompareConfig(recipes=tuple(map(str, paths)), output=str(root / "out")), registry=registry)
    return root / "out", result


def _rows(folder: Path, part: str) -> list[dict]:
    return pq.read_table(
        folder / f"{part}.parquet", columns=["id", "sample", "answer", "reference"]
    ).to_pylist()


def test_table_matches_recount_from_build_outputs(compared):
    out, result = compared
    stored = {r["name"]: r for r in json.loads((out / "report.json").read_text())["recipes"]}
    every = _rows(out / "recipes" / "vote", "curated") + _rows(out / "recipes" / "vote", "rejected")
    assert len(every) == 1200
    correct_total = sum(r["answer"] is not None and r["answer"] == r["reference"] for r in every)
    for name in RECIPES:
        kept = _rows(out / "recipes" / name, "curated")
        right = sum(r["answer"] is not None and r["answer"] == r["reference"] for r in kept)
        assert stored[name]["rows_kept"] == len(kept)
        assert stored[name]["questions_kept"] == len({r["id"] for r in kept})
        assert stored[name]["precision"] == pytest.approx(right / len(kept))
        assert stored[name]["recall"] == pytest.approx(right / correct_total)
    # The correctness recipe keeps exactly the correct rows.
    assert stored["correct"]["precision"] == 1.0 and stored["correct"]["recall"] == 1.0
    markdown = (out / "report.md").read_text()
    line = next(x for x in markdown.splitlines() if x.startswith("| entropy |"))
    assert f"| {stored['entropy']['precision']:.3f} |" in line


def test_jaccard_matches_kept_sets(compared):
    out, _ = compared
    sets = {n: {(r["id"], r["sample"]) for r in _rows(out / "recipes" / n, "curated")} for n in RECIPES}
    jaccard = json.loads((out / "report.json").read_text())["jaccard"]
    for i, a in enumerate(jaccard["recipes"]):
        for j, b in enumerate(jaccard["recipes"]):
            assert jaccard["matrix"][i][j] == pytest.approx(len(sets[a] & sets[b]) / len(sets[a] | sets[b]))


def test_shared_steps_are_scored_once(compared):
    _, result = compared
    steps = {o.name: o.manifest["steps"][0] for o in result.outcomes}
    # Recipes that differ only in selection options (min_share, threshold vs keep_percent) share the scores.
    assert [steps[n]["cached"] for n in ("vote", "vote_strict", "entropy", "entropy_half")] == [
        False,
        True,
        False,
        True,
    ]
    assert steps["vote"]["cache"] == steps["vote_strict"]["cache"]
    assert steps["entropy"]["cache"] == steps["entropy_half"]["cache"]
    assert steps["entropy"]["rows_kept"] != steps["entropy_half"]["rows_kept"]


def test_report_files_and_figures(compared):
    out, result = compared
    names = {p.name for p in result.report.figures}
    assert {"jaccard.png", "precision-sweep.png"} <= names
    # One source per shared step: vote_share of both vote recipes, answer_entropy of both entropy recipes.
    assert sorted(n for n in names if n.startswith("distribution-")) == [
        "distribution-0-vote_share.png",
        "distribution-1-answer_entropy.png",
    ]
    assert "intervals-1-answer_entropy.png" in names
    assert "vote_share (step majority_vote) in vote, vote_strict" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(names)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["name"] for r in manifest["recipes"]] == list(RECIPES)


def test_recipes_with_different_tasks_are_refused(tmp_path):
    from curator.errors import CuratorError

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(f"input: {EXAMPLE}\ntask: last_number\nfilters: [majority_vote]\n")
    b.write_text(f"input: {EXAMPLE}\ntask: gsm8k\nfilters: [majority_vote]\n")
    with pytest.raises(CuratorError, match="different tasks"):
        run_compare(CompareConfig(recipes=(str(a), str(b)), output=str(tmp_path / "out")))


def test_recipe_names_are_unique():
    assert recipe_names([Path("x/a.yaml"), Path("y/a.yaml"), Path("b.yml"), Path("z/a.yaml")]) == [
        "a",
        "a-2",
        "b",
        "a-3",
    ]
