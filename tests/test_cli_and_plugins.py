"""The command line, the plugin listing, and a third-party plugin installed with pip."""

from __future__ import annotations

import json
import os
import re
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
            "heavy = [m for m in ('torch', 'transformers', 'openai', 'matplotlib', 'datasets', 'sympy', 'math_verify') if m in sys.modules]; "
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


def readme_plugin_files() -> dict[str, str]:
    """The README's plugin package, block by block exactly as printed: module, pyproject.toml, test."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Writing a plugin") : readme.index("## Methods")]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.DOTALL)
    python = [code for language, code in blocks if language == "python"]
    toml = [code for language, code in blocks if language == "toml"]
    assert len(python) == 2 and len(toml) == 1, "the plugin section's code blocks changed; update this test"
    return {"curator_short_rationales.py": python[0], "pyproject.toml": toml[0],
            "tests/test_short_rationales.py": python[1]}


def test_the_readme_plugin_is_the_one_in_the_plugins_docstring():
    module = readme_plugin_files()["curator_short_rationales.py"]
    assert len(module.strip().splitlines()) < 40
    import curator_plugins

    example = textwrap.dedent(curator_plugins.__doc__.split("::", 1)[1])
    assert module.strip() in example


@pytest.mark.slow
def test_the_readme_plugin_installs_lists_runs_and_passes_its_own_test(tmp_path):
    package = tmp_path / "pkg"
    for name, text in readme_plugin_files().items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
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
    # The plugin's own test, from its own folder, with the fixtures rationale-curator installs.
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                           capture_output=True, text=True, cwd=package, env={**os.environ, **env})
    assert tests.returncode == 0 and "1 passed" in tests.stdout, tests.stdout + tests.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["steps"][0]["meaning"] == {"rationale_chars": "lower"} and manifest["steps"][0]["scope"] == "row"


def test_build_progress_bar_shows_rows_per_second(tmp_path):
    run = curator_cli("build", str(EXAMPLE / "self_consistency.yaml"), "--output", str(tmp_path / "out"), "--progress")
    assert run.returncode == 0, run.stderr
    assert "rows/s" in run.stderr and "entropy" in run.stderr
