"""``curator eval`` with a scripted backend: what is asked, what is counted, what is written.

The backend replays completions from a JSON script (its ``--model``), so each
strategy's accuracy can be worked out by hand from the script.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curator import Task, hookimpl
from curator.backend import Backend, Completion, Result
from curator.errors import CuratorError
from curator.evaluate import run as eval_run
from curator.evaluate.run import EvalConfig, run_eval
from curator.plugins import registry_for


class LastNumber(Task):
    name = "last_number"

    def extract(self, text: str) -> str | None:
        numbers = re.findall(r"-?\d+", text)
        return numbers[-1] if numbers else None


class Scripted(Backend):
    """Completions per prompt from ``options.model`` (a JSON file); a prompt scripted as a string fails."""

    name = "scripted"
    requests: list = []

    async def complete(self, request):
        Scripted.requests.append(request)
        script = json.loads(Path(self.options.model).read_text())[request.prompt]
        if isinstance(script, str):
            return Result(request, error=script)
        completions = script[: request.params.n]
        return Result(
            request, tuple(Completion(text, logprob, tokens) for text, logprob, tokens in completions)
        )


class Plugin:
    @hookimpl
    def register_tasks(self, register):
        register(LastNumber())

    @hookimpl
    def register_backends(self, register):
        register(Scripted)


# Question -> (reference, [(completion, logprob, n_tokens), ...]).
SCRIPT = {
    "one": ("1", [("so 1", -0.1, 2), ("so 2", -2.0, 2), ("so 2", -6.0, 2)]),  # SC says 2, weighted says 1
    "two": ("2", [("so 2", -3.0, 3), ("no idea", -0.1, 2), ("so 5", -2.0, 2)]),  # tie 2/5: first sampled (2)
    "three": ("3", [("so 3", -0.5, 1), ("so 4", -0.4, 1), ("so 4", -0.6, 1)]),
    "four": ("4", [("nothing", -1.0, 1), ("still nothing", -1.0, 1), ("no", -1.0, 1)]),
}


@pytest.fixture
def scripted(tmp_path):
    Scripted.requests = []
    data = tmp_path / "test.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": q, "answer": f"work\n#### {ref}"}) + "\n"
            for q, (ref, _) in SCRIPT.items()
        )
    )
    script = tmp_path / "script.json"
    script.write_text(json.dumps({f"Q: {q}\nA:": completions for q, (_, completions) in SCRIPT.items()}))
    return data, script, registry_for([Plugin()])


def _config(data, script, tmp_path, strategy, **extra):
    extra.setdefault("tie_rule", "first")  # what _by_hand counts; the split rule has its own test
    return EvalConfig(
        model=str(script),
        data=str(data),
        task="last_number",
        strategy=strategy,
        output=str(tmp_path / strategy),
        backend="scripted",
        progress=False,
        **extra,
    )


def _by_hand(strategy: str) -> list[str | None]:
    """The prediction per question, counted directly from SCRIPT."""
    predictions = []
    for _, completions in SCRIPT.values():
        totals: dict[str, float] = {}
        order = []
        for text, logprob, tokens in completions[: 1 if strategy == "greedy" else None]:
            numbers = re.findall(r"-?\d+", text)
            if not numbers:
                continue
            weight = math.exp(logprob / tokens) if strategy == "weighted" else 1.0
            totals[numbers[-1]] = totals.get(numbers[-1], 0.0) + weight
            order.append(numbers[-1])
        best = max(totals.values(), default=None)
        predictions.append(next((a for a in order if totals[a] == best), None))
    return predictions


@pytest.mark.parametrize("strategy", ["greedy", "self-consistency", "weighted"])
def test_accuracy_matches_hand_count(scripted, tmp_path, strategy):
    data, script, registry = scripted
    result = run_eval(
        _config(data, script, tmp_path, strategy, n=None if strategy == "greedy" else 3), registry=registry
    )
    expected = _by_hand(strategy)
    references = [ref for ref, _ in SCRIPT.values()]
    right = sum(p == r for p, r in zip(expected, references, strict=True))
    predictions = pq.read_table(result.predictions)
    assert predictions["prediction"].to_pylist() == expected
    assert predictions["correct"].to_pylist() == [p == r for p, r in zip(expected, references, strict=True)]
    metrics = json.loads((tmp_path / strategy / "metrics.json").read_text())
    assert metrics["correct"] == right and metrics["accuracy"] == right / 4
    assert metrics["ci95"][0] <= right / 4 <= metrics["ci95"][1]
    assert predictions["reference"].to_pylist() == references  # from GSM8K's '#### N'
    params = Scripted.requests[0].params
    if strategy == "greedy":  # sampling forced off
        assert (params.n, params.temperature) == (1, 0.0)
    else:
        assert (params.n, params.temperature) == (3, 0.7)
    assert params.logprobs is (strategy == "weighted") and params.stop == ("\nQ:",)


def test_strategies_disagree_where_the_script_says(tmp_path):
    assert _by_hand("self-consistency")[0] == "2" and _by_hand("weighted")[0] == "1"
    assert _by_hand("self-consistency")[1] == "2"  # the tie rule


# Under the default split tie rule "two" (tied 2/5 both ways) scores 1/2: SC 0.5 of 4, weighted 1.5 of 4.
@pytest.mark.parametrize(("strategy", "accuracy"), [("self-consistency", "0.1250"), ("weighted", "0.3750")])
def test_failed_request_is_recorded_and_exits_1(scripted, tmp_path, monkeypatch, capsys, strategy, accuracy):
    data, script, registry = scripted
    broken = json.loads(script.read_text())
    broken["Q: three\nA:"] = "server said 500"
    script.write_text(json.dumps(broken))
    monkeypatch.setattr(eval_run, "get_registry", lambda: registry)
    from curator.cli import main

    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", str(script), "--data", str(data), "--task", "last_number", "--strategy", strategy,
              "--n", "3", "--backend", "scripted", "--output", str(out), "--no-progress"])  # fmt: skip
    assert exit_info.value.code == 1
    line = capsys.readouterr().out
    # "three" failed; SC gets "one" wrong (2 votes to 1), weighted gets it right; "two" is a tie both ways.
    assert line.startswith(f"accuracy {accuracy} (95% CI ") and "1 failed requests" in line
    predictions = pq.read_table(out / "predictions.parquet").to_pylist()
    assert predictions[2]["error"] == "server said 500" and predictions[2]["prediction"] is None
    assert predictions[0]["candidate_answer"] == ["1", "2", "2"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["failed_requests"] == 1 and metrics["questions"] == 4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "greedy", "n": 4}, "greedy"),
        ({"strategy": "ranked"}, "needs --ranker"),
        ({"strategy": "self-consistency", "ranker": "r"}, "used by strategy .ranked. only"),
        ({"strategy": "vote"}, "strategy must be one of"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(CuratorError, match=message):
        EvalConfig(model="m", data="d", task="t", output="o", **options)


def test_split_tie_rule_scores_one_over_the_ties(scripted, tmp_path):
    """Dust into Gold's ASC.py: a tie between k answers scores 1/k when the reference is among them."""
    data, script, registry = scripted
    picked = set()
    for seed in range(6):
        config = _config(data, script, tmp_path / str(seed), "self-consistency", n=3, tie_rule="split", seed=seed)
        result = run_eval(config, registry=registry)
        rows = pq.read_table(result.predictions).to_pylist()
        assert [r["credit"] for r in rows] == [0.0, 0.5, 0.0, 0.0]
        assert [r["tied_answers"] for r in rows] == [1, 2, 1, 0]
        assert rows[1]["correct"] == (rows[1]["prediction"] == "2")
        picked.add(rows[1]["prediction"])
        assert result.metrics["accuracy"] == 0.125 and result.metrics["correct"] == 0.5
        assert result.metrics["tied_questions"] == 1 and result.metrics["tie_rule"].startswith("split")
    assert picked == {"2", "5"}  # the written prediction is drawn among the tied answers, by the seed
