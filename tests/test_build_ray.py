"""The Ray Data executor against the local one: same outputs, one cache, resumable, one-line errors.

Ray starts once, in a subprocess inside a fresh network namespace holding
only loopback (see :mod:`curator.testing.ray_sandbox`), and
``ray_checks.py`` runs every check there; the tests below read its report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curator.testing import ray_sandbox

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def report(tiny_llama, tmp_path_factory):
    reason = ray_sandbox.unavailable()
    if reason:
        pytest.skip(f"Ray tests need a network namespace: {reason}")
    work = tmp_path_factory.mktemp("ray")
    config, result = work / "config.json", work / "result.json"
    config.write_text(json.dumps({"work": str(work / "builds"), "tiny_llama": str(tiny_llama)}))
    run = ray_sandbox.run_python([str(TESTS / "ray_checks.py"), str(config), str(result)],
                                 env={"PYTHONPATH": str(TESTS), "CURATOR_CACHE": str(work / "cache")}, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(result.read_text())


def test_the_shipped_example_with_a_model_step_equals_the_local_build(report):
    assert report["example_equal"]
    assert report["example_rows"] == report["example_local_rows"]
    assert report["example_rows"][0][0] == 1200  # majority_vote sees every candidate, ds_weight what it kept
    assert report["example_rows"][1][0] == report["example_rows"][0][1]
    assert report["example_executor"]["name"] == "ray"
    assert report["example_executor"]["steps"]["ds_weight"]["kind"] == "actors"  # the model loads once per actor
    ray_facts, local_facts = report["example_facts"]
    assert ray_facts["L_v"] == pytest.approx(local_facts["L_v"]) and ray_facts["valid_rows"] == local_facts["valid_rows"]
    assert report["example_seconds"]["score"] > 0 and report["example_seconds"]["wall"] >= report["example_seconds"]["fit"]


def test_200k_rows_in_uneven_groups_equal_the_local_build_row_for_row(report):
    assert report["uneven_rows"] == 200_000 and report["uneven_largest_group"] >= 300
    assert report["uneven_equal"]
    assert report["uneven_scored_by_ray"] == report["uneven_rows_in"]  # every reached row, once
    assert report["uneven_workers"]["majority_vote"] == {"workers": 2, "kind": "tasks", "num_cpus": 1}


def test_the_score_cache_ray_filled_serves_the_local_executor_at_another_batch_size(report):
    assert report["cache_local_after_ray_scored"] == [0, 0, 0, 0]
    assert report["cache_local_after_ray_equal"]


def test_a_ray_driver_killed_with_sigkill_resumes_and_equals_an_uninterrupted_run(report):
    assert report["killed_parts_at_kill"] >= 4 and not report["killed_finished_before_kill"]
    assert 0 < report["killed_resumed_scored"] < report["killed_rows_in"]
    assert report["killed_resumed_scored"] == report["killed_rows_in"] - report["killed_rows_stored_at_kill"]
    assert report["killed_equal"]


def test_a_filter_error_in_a_ray_worker_is_one_line_naming_the_filter(report):
    message = report["error_message"]
    assert message and "\n" not in message
    assert message.startswith("filter 'short_changed' (") and "returned 1199 values for column 'x'" in message


def test_the_command_line_joins_a_running_cluster(report):
    assert report["cli_returncode"] == 0, report["cli_stderr"]
    assert report["cli_stdout"].startswith("1200 rows in, ")
    assert report["cli_executor"]["name"] == "ray" and report["cli_executor"]["address"].endswith(":6379") is False
    assert report["cli_equal"]
