"""``curator compare`` end to end on the shipped GSM8K sample (real GPT-3 rationales).

Seven recipes over the same 1,200 candidates, one of them using the README's
third-party filter and one keeping nothing; the report's numbers are
recomputed here in plain Python from the build outputs, and the score cache
must have scored each shared step once.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import types
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_cli_and_plugins import readme_plugin_files

from curator import Task, hookimpl
from curator.errors import CuratorError
from curator.plugins import registry_for
from curator.report import CompareConfig
from curator.report.compare import recipe_names, run_compare

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gsm8k" / "candidates.jsonl"
pytestmark = pytest.mark.filterwarnings("ignore:filter step 'entropy' dropped every row")  # the 'nothing' recipe


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
    "short": ["short_rationales: {max_chars: 300}"],  # the README's third-party filter
    "nothing": ["entropy: {threshold: 0.0}"],  # H < 0 never holds: keeps no row
}
NAMED = {"correct": "gold"}
"""Recipes that carry a ``name:`` key (the others are named after their file)."""


def readme_plugin(folder: Path) -> types.ModuleType:
    """The README's plugin module exactly as printed, imported from a file as an in-process plugin (no install)."""
    path = folder / "curator_short_rationales.py"
    path.write_text(readme_plugin_files()["curator_short_rationales.py"])
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # a dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    paths = []
    for stem, steps in RECIPES.items():
        path = root / f"{stem}.yaml"
        filters = "\n".join(f"  - {s}" for s in steps)
        named = f"name: {NAMED[stem]}\n" if stem in NAMED else ""
        path.write_text(
            f"{named}input: {EXAMPLE}\ntask: last_number\ncache: {root / 'cache'}\nfilters:\n{filters}\n"
        )
        paths.append(path)
    plugin = readme_plugin(root)
    registry = registry_for([TaskPlugin(), plugin], entry_points_too=True)
    result = run_compare(CompareConfig(recipes=tuple(map(str, paths)), output=str(root / "out")), registry=registry)
    yield root / "out", result
    del sys.modules[plugin.__name__]


def _name(stem: str) -> str:
    return NAMED.get(stem, stem)


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
    for name in map(_name, RECIPES):
        kept = _rows(out / "recipes" / name, "curated")
        right = sum(r["answer"] is not None and r["answer"] == r["reference"] for r in kept)
        assert stored[name]["rows_kept"] == len(kept)
        assert stored[name]["questions_kept"] == len({r["id"] for r in kept})
        assert stored[name]["precision"] == (pytest.approx(right / len(kept)) if kept else None)
        assert stored[name]["recall"] == pytest.approx(right / correct_total)
    # The correctness recipe keeps exactly the correct rows; the last recipe keeps none and is a result too.
    assert stored["gold"]["precision"] == 1.0 and stored["gold"]["recall"] == 1.0
    assert stored["nothing"]["rows_kept"] == 0
    markdown = (out / "report.md").read_text()
    line = next(x for x in markdown.splitlines() if x.startswith("| entropy |"))
    assert f"| {stored['entropy']['precision']:.3f} |" in line
    assert next(x for x in markdown.splitlines() if x.startswith("| nothing |")) == "| nothing | 0 | 0 | 0.000 | — | 0.000 |"
    assert "nothing, step entropy: " in markdown  # the build's drop-all warning, in the report
    baseline = json.loads((out / "report.json").read_text())["no_filter"]
    assert baseline["rows_kept"] == 1200 and baseline["precision"] == pytest.approx(correct_total / 1200)


def test_jaccard_matches_kept_sets(compared):
    out, _ = compared
    sets = {n: {(r["id"], r["sample"]) for r in _rows(out / "recipes" / n, "curated")} for n in map(_name, RECIPES)}
    jaccard = json.loads((out / "report.json").read_text())["jaccard"]
    for i, a in enumerate(jaccard["recipes"]):
        for j, b in enumerate(jaccard["recipes"]):
            union = sets[a] | sets[b]
            assert jaccard["matrix"][i][j] == pytest.approx(len(sets[a] & sets[b]) / len(union) if union else 1.0)


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
    assert {"jaccard.png", "precision-sweep.png", "precision-recall.png"} <= names
    # One source per shared step: vote_share of both vote recipes, answer_entropy of the entropy recipes,
    # and the third-party filter's rationale_chars, plotted from the meaning its class declares.
    assert sorted(n for n in names if n.startswith("distribution-")) == [
        "distribution-0-vote_share.png",
        "distribution-1-answer_entropy.png",
        "distribution-2-rationale_chars.png",
    ]
    assert {"intervals-1-answer_entropy.png", "intervals-2-rationale_chars.png"} <= names
    markdown = (out / "report.md").read_text()
    assert "vote_share (step majority_vote) in vote, vote_strict" in markdown
    assert "answer_entropy (step entropy) in entropy, entropy_half, nothing" in markdown
    assert "Not plotted, having no order: vote_answer (step majority_vote): categorical, correct (step correctness): boolean." in markdown
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(names)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["name"] for r in manifest["recipes"]] == list(map(_name, RECIPES))
    assert (out / "recipes" / "gold" / "curated.parquet").exists()


def test_a_third_party_score_gets_its_figures_and_numbers(compared):
    """The README plugin's ``rationale_chars`` (lower kept): its sweep and precision-recall, recounted."""
    out, _ = compared
    rows = pq.read_table(out / "recipes" / "short" / "curated.parquet", columns=["answer", "reference", "rationale"])
    rows = rows.to_pylist() + pq.read_table(
        out / "recipes" / "short" / "rejected.parquet", columns=["answer", "reference", "rationale"]
    ).to_pylist()
    lengths = sorted((len(r["rationale"]), r["answer"] is not None and r["answer"] == r["reference"]) for r in rows)
    scores = {s["column"]: s for s in json.loads((out / "report.json").read_text())["scores"]}
    entry = scores["rationale_chars"]
    assert entry["meaning"] == "lower" and entry["recipes"] == ["short"] and entry["rows_reached"] == 1200
    for k, kept, precision in zip(entry["sweep"]["percent"], entry["sweep"]["rows_kept"], entry["sweep"]["precision"],
                                  strict=True):  # fmt: skip
        target = 1200 * k // 100
        cut = lengths[target - 1][0]
        better = [right for length, right in lengths if length < cut]
        tied = [right for length, right in lengths if length == cut]
        share = (target - len(better)) / len(tied)
        assert kept == target
        assert precision == pytest.approx((sum(better) + share * sum(tied)) / target)
    correct_total = sum(right for _, right in lengths)
    average, previous = 0.0, 0.0
    for value in sorted({length for length, _ in lengths}):
        taken = [right for length, right in lengths if length <= value]
        recall = sum(taken) / correct_total
        average += (recall - previous) * sum(taken) / len(taken)
        previous = recall
    assert entry["average_precision"] == pytest.approx(average)


def test_recipes_with_different_tasks_are_refused(tmp_path):
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
    # A recipe's name: key wins over its stem; the baselines' labels are never taken.
    paths = [Path("x/a.yaml"), Path("y/a.yaml"), Path("no filter.yaml"), Path("c.yaml")]
    assert recipe_names(paths, ["iwsi", None, None, "iwsi"]) == ["iwsi", "a", "no filter-2", "iwsi-2"]


@pytest.mark.parametrize("name", ["", "a/b", "../up", "with space", ".hidden", 3, "x" * 65])
def test_a_recipe_name_must_be_a_plain_label(tmp_path, name):
    from curator.build import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(f"name: {json.dumps(name)}\ninput: {EXAMPLE}\ntask: gsm8k\nfilters: [majority_vote]\n")
    with pytest.raises(CuratorError, match=r"r.yaml: 'name' must be 1-64 letters, digits"):
        load_recipe(path)
