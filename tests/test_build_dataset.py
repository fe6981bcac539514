"""The recipe's ``dataset`` key: the curated split saved as a Hugging Face dataset, with its card, and pushed."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import yaml
from helpers_build import build, read_split
from helpers_hf import gsm8k_rows, hub_folder

from curator import CuratorError
from curator.build import parse_recipe
from curator.cli import main
from curator.io import Source
from curator.testing import make_candidates

datasets = pytest.importorskip("datasets")


@pytest.fixture
def candidates(tmp_path):
    path = tmp_path / "candidates.parquet"
    pq.write_table(make_candidates([["1", "1", "2"], ["5", "6", "5", "5"], ["7"]], references=["1", "5", "8"]), path)
    return path


def front_matter(card: str) -> dict:
    _, header, _ = card.split("---\n", 2)
    return yaml.safe_load(header)


def test_the_curated_split_is_saved_with_its_card(candidates, tmp_path):
    result = build(tmp_path, candidates, ["majority_vote", "correctness"], dataset={"save": True, "license": "mit"})
    curated, _, manifest = read_split(result.output_dir)
    folder = result.output_dir / "dataset"
    saved = datasets.load_from_disk(str(folder))
    assert saved.column_names == [c for c in curated.column_names if c not in ("keep", "dropped_by")]
    assert saved.to_list() == curated.drop_columns(["keep", "dropped_by"]).to_pylist()
    assert Source.open(folder).read_table().num_rows == curated.num_rows  # curator train --data OUT/dataset
    card = (folder / "README.md").read_text()
    meta = front_matter(card)
    assert meta["license"] == "mit" and meta["size_categories"] == ["n<1K"] and "rationale-curator" in meta["tags"]
    assert f"# Curated rationales: {manifest['rows_out']} of {manifest['rows_in']} candidates" in card
    for step in manifest["steps"]:
        assert f"| {step['step']} | {step['filter']} | {step['rows_in']} | {step['rows_kept']} | " \
               f"{step['rows_dropped']} |" in card
    recipe_block = card.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(recipe_block) == manifest["recipe"]
    assert "- `vote_share`: score of step `majority_vote` (majority_vote)" in card
    assert "keep its licence, `mit`" in card


def test_without_a_licence_the_card_says_so(candidates, tmp_path):
    result = build(tmp_path, candidates, ["correctness"], dataset=True)
    card = (result.output_dir / "dataset" / "README.md").read_text()
    assert front_matter(card)["license"] == "unknown"
    assert "is not known to rationale-curator (set `dataset.license` in the recipe)" in card


def test_the_licence_of_an_hf_input_comes_from_its_card(tmp_path):
    hub_folder(tmp_path / "gsm8k", {"main": {"train": gsm8k_rows(3)}}, license="cc-by-4.0")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("input: hf:./gsm8k\ntask: gsm8k\nfilters: [correctness]\noutput: out\ndataset: true\n")
    main(["build", str(recipe)])
    card = (tmp_path / "out" / "dataset" / "README.md").read_text()
    assert front_matter(card)["license"] == "cc-by-4.0"
    assert datasets.load_from_disk(str(tmp_path / "out" / "dataset")).num_rows == 3


def test_a_rebuild_replaces_the_folder(candidates, tmp_path):
    build(tmp_path, candidates, ["correctness"], dataset=True)
    result = build(tmp_path, candidates, [{"majority_vote": {"min_share": 0.7}}], dataset=True)
    saved = datasets.load_from_disk(str(result.output_dir / "dataset"))
    assert saved.num_rows == result.manifest["rows_out"] and "vote_share" in saved.column_names
    assert not list(result.output_dir.glob(".dataset-*"))


class HubCalls:
    """Stands in for the hub's HTTP API, recording what the push asks of it (no hub exists here)."""

    def __init__(self, monkeypatch, fail: bool = False) -> None:
        from huggingface_hub import DatasetCard, HfApi

        self.calls: list[tuple] = []
        monkeypatch.setattr(HfApi, "create_repo", lambda api, repo, **kw: self.calls.append(("create_repo", repo, kw)))
        monkeypatch.setattr(DatasetCard, "push_to_hub",
                            lambda card, repo, **kw: self.calls.append(("card", repo, str(card))))

        def push_rows(dataset, repo, **kw):
            if fail:
                raise OSError("401 Client Error: Unauthorized\nInvalid credentials")
            self.calls.append(("rows", repo, dataset.num_rows, kw))

        monkeypatch.setattr(datasets.Dataset, "push_to_hub", push_rows)


def test_push_sends_the_card_then_the_rows(candidates, tmp_path, monkeypatch):
    hub = HubCalls(monkeypatch)
    result = build(tmp_path, candidates, ["correctness"], dataset={"push": "me/curated", "save": False})
    assert [c[0] for c in hub.calls] == ["create_repo", "card", "rows"]
    assert hub.calls[0][1:] == ("me/curated", {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert "# Curated rationales:" in hub.calls[1][2]
    assert hub.calls[2][1:3] == ("me/curated", result.manifest["rows_out"])
    assert hub.calls[2][3]["split"] == "train" and hub.calls[2][3]["private"] is True
    assert not (result.output_dir / "dataset").exists()


def test_a_failed_push_says_the_build_is_complete(candidates, tmp_path, monkeypatch, capsys):
    HubCalls(monkeypatch, fail=True)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"input: {candidates}\ntask: gsm8k\nfilters: [correctness]\noutput: out\n"
                      "dataset: {push: me/curated, private: false}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["build", str(recipe)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "are complete, but pushing to me/curated failed: 401 Client Error: Unauthorized (OSError)" in err
    assert (tmp_path / "out" / "manifest.json").exists() and (tmp_path / "out" / "dataset").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"push": "curated"}, "'push' must be a hub repo 'owner/name'"),
        ({"save": False}, "nothing to do"),
        ({"svae": True}, "unknown key 'svae'"),
        ({"private": "yes"}, "'private' must be true or false"),
        ("yes", "'dataset' must be true or a mapping"),
    ],
)
def test_bad_dataset_keys(tmp_path, value, message):
    with pytest.raises(CuratorError, match=message):
        parse_recipe({"input": "c.parquet", "task": "gsm8k", "dataset": value}, base_dir=tmp_path)
