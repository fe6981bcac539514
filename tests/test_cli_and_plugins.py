"""The command line, the plugin listing, and a third-party plugin installed with pip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import EXAMPLE, ROOT

import curator


def curator_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curator", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def test_version():
    run = curator_cli("--version")
    assert run.returncode == 0 and curator.__version__ in run.stdout


def test_plugins_lists_every_builtin_with_kind_and_distribution():
    run = curator_cli("plugins", "--json")
    assert run.returncode == 0, run.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(run.stdout)}
    for name in ("correctness", "majority_vote", "entropy", "ds_weight", "self_eval", "reward_model", "nce_kl"):
        assert rows[("filter", name)]["distribution"].startswith("rationale-curator ")
    for name in ("gsm8k", "numeric", "math", "multiple_choice", "yes_no"):
        assert ("task", name) in rows
    for name in ("openai", "transformers"):
        assert ("backend", name) in rows
    table = curator_cli("plugins").stdout.splitlines()
    assert table[0].split() == ["kind", "name", "plugin", "distribution"]


def test_import_and_plugins_command_stay_light():
    code = ("import sys, curator, curator.cli; from curator.plugins import get_registry; get_registry(); "
            "heavy = [m for m in ('torch', 'transformers', 'openai', 'matplotlib', 'datasets') if m in sys.modules]; "
            "print(heavy)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_build_command_with_set_and_output(tmp_path):
    out = tmp_path / "out"
    run = curator_cli("build", str(EXAMPLE / "recipe.yaml"), "--output", str(out), "--no-progress",
                      "--set", "filters=[correctness]")
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["step"] for s in manifest["steps"]] == ["correctness"]
    curated = pq.read_table(out / "curated.parquet")
    # the gsm8k parser agrees with the GPT-3 correctness labels shipped with the data
    assert curated.column("gpt3_is_correct").to_pylist() == [True] * curated.num_rows
    assert manifest["rows_out"] == 472
    assert "472 kept" in run.stdout


def test_bad_override_is_exit_2(tmp_path):
    run = curator_cli("build", str(EXAMPLE / "recipe.yaml"), "--set", "filters.9.x=1")
    assert run.returncode == 2 and "--set filters.9.x" in run.stderr


THIRD_PARTY_MODULE = textwrap.dedent('''
    from dataclasses import dataclass

    import pyarrow.compute as pc
    from curator import Filter, Selection, hookimpl, select_option


    @dataclass(kw_only=True)
    class ShortRationales(Filter):
        name = "short_rationales"
        columns = ("rationale_chars",)
        scope = "row"  # a score depends on its own row only (the default, "group": on its group)
        score_meaning = {"rationale_chars": "lower"}  # select keeps the low end
        max_chars: int = select_option(2000)

        def score(self, batch, context):
            return {"rationale_chars": pc.utf8_length(batch["rationale"])}

        def select(self, batch, stats):
            return Selection(keep=pc.less_equal(batch["rationale_chars"], self.max_chars))


    @hookimpl
    def register_filters(register):
        register(ShortRationales)
''')

THIRD_PARTY_PYPROJECT = textwrap.dedent('''
    [build-system]
    requires = ["setuptools>=61"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "curator-short-rationales"
    version = "0.3.0"

    [project.entry-points.curator]
    short_rationales = "curator_short_rationales"
''')


def test_readme_and_plugin_package_examples_are_the_tested_one():
    readme = (ROOT / "README.md").read_text()
    assert THIRD_PARTY_MODULE.strip() in readme
    assert THIRD_PARTY_PYPROJECT.strip() in readme
    assert len(THIRD_PARTY_MODULE.strip().splitlines()) < 40
    import curator_plugins

    example = textwrap.dedent(curator_plugins.__doc__.split("::", 1)[1])
    assert THIRD_PARTY_MODULE.strip() in example


@pytest.mark.slow
def test_a_pip_installed_third_party_filter_is_listed_and_runs(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "pyproject.toml").write_text(THIRD_PARTY_PYPROJECT)
    (package / "curator_short_rationales.py").write_text(THIRD_PARTY_MODULE)
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(package)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listing = json.loads(curator_cli("plugins", "--json", env=env).stdout)
    entry = next(r for r in listing if r["name"] == "short_rationales")
    assert entry == {"kind": "filter", "name": "short_rationales", "plugin": "short_rationales",
                     "distribution": "curator-short-rationales 0.3.0"}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"input: {EXAMPLE / 'candidates.jsonl'}\ntask: gsm8k\n"
                      f"filters:\n  - short_rationales: {{max_chars: 300}}\noutput: {tmp_path / 'out'}\n")
    run = curator_cli("build", str(recipe), "--no-progress", env=env)
    assert run.returncode == 0, run.stderr
    curated = pq.read_table(tmp_path / "out" / "curated.parquet")
    assert curated.num_rows > 0
    assert max(curated.column("rationale_chars").to_pylist()) <= 300
    rejected = pq.read_table(tmp_path / "out" / "rejected.parquet")
    assert min(rejected.column("rationale_chars").to_pylist()) > 300
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["steps"][0]["meaning"] == {"rationale_chars": "lower"} and manifest["steps"][0]["scope"] == "row"


def test_build_progress_bar_shows_rows_per_second(tmp_path):
    run = curator_cli("build", str(EXAMPLE / "self_consistency.yaml"), "--output", str(tmp_path / "out"), "--progress")
    assert run.returncode == 0, run.stderr
    assert "rows/s" in run.stderr and "entropy" in run.stderr
