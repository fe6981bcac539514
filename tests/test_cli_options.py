"""Every command's options: derived from its config, described in --help, required ones marked."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest

from curator.cli import cli, main
from curator.errors import CuratorError
from curator.evaluate import EvalConfig
from curator.generate import GenerateConfig
from curator.report import CompareConfig
from curator.settings import described_fields
from curator.train import TrainConfig

CONFIGS: dict[str, type] = {"generate": GenerateConfig, "train": TrainConfig, "eval": EvalConfig, "compare": CompareConfig}


def commands() -> list[tuple[str, click.Command, click.Context]]:
    root = click.Context(cli, info_name="curator", **cli.context_settings)
    found = []
    for name in cli.list_commands(root):
        command = cli.get_command(root, name)
        assert command is not None
        found.append((name, command, click.Context(command, info_name=name, parent=root)))
    return found


def test_every_command_is_walked():
    assert {name for name, _, _ in commands()} >= {"build", "generate", "train", "eval", "compare", "export", "plugins"}


@pytest.mark.parametrize("name", ["build", "generate", "train", "eval", "compare", "export", "plugins"])
def test_every_option_has_help_and_required_ones_are_marked(name, capsys):
    _, command, context = next(c for c in commands() if c[0] == name)
    config = CONFIGS.get(name)
    required = {
        spec.name
        for spec in (dataclasses.fields(config) if config else ())
        if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
    }
    options = [p for p in command.get_params(context) if isinstance(p, click.Option) and p.expose_value]
    assert options
    for option in options:
        record = option.get_help_record(context)
        assert record is not None and option.help, f"{name} {option.opts}: no help text"
        if option.required or option.name in required:
            assert "required" in record[1], f"{name} {option.opts} is required but --help does not say so"
    main([name, "--help"])
    shown = capsys.readouterr().out
    assert "-h, --help" in shown
    for option in options:
        assert option.opts[0] in shown


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_setting_of_the_config_is_one_parameter(name):
    _, command, context = next(c for c in commands() if c[0] == name)
    names = [p.name for p in command.get_params(context) if p.expose_value and p.name != "config_path"]
    assert names == [spec.name for spec in described_fields(CONFIGS[name])]


def test_train_marks_what_the_config_file_may_supply():
    _, command, context = next(c for c in commands() if c[0] == "train")
    help_text = {p.name: p.get_help_record(context)[1] for p in command.get_params(context) if p.expose_value}
    for name in ("data", "model", "output"):
        assert "required here or in --config" in help_text[name]
    assert "[default: 1]" in help_text["epochs"] and help_text["epochs"].startswith("Passes over the data")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: GenerateConfig(input="q", output="o", task="t", model="m", n=0), "generate: n must be at least 1"),
        (lambda: GenerateConfig(input="q", output="o", task="t", model="m", top_p=0.0), "top_p must be more than 0"),
        (lambda: GenerateConfig(input="q", output="o", task="t", model="m", prompt="x"), "prompt must be one of"),
        (lambda: EvalConfig(model="m", data="d", task="t", strategy="greedy", output="o", limit=0), "limit must be"),
        (lambda: TrainConfig(data="d", model="m", output="o", lr=0), "train: lr must be more than 0"),
        (lambda: CompareConfig(recipes=("a.yaml",), output="o", strategy="ranked"), "strategy must be one of"),
        (lambda: CompareConfig(recipes=(), output="o"), "give at least one recipe"),
    ],
)
def test_the_api_holds_the_bounds_the_command_line_does(build, message):
    with pytest.raises(CuratorError, match=message):
        build()


def test_a_run_with_recorded_failures_returns_exit_code_1_to_main(monkeypatch):
    """Commands return their code; only ``main`` exits."""
    from curator.evaluate import EvalResult

    metrics = {"ci95": [0.0, 1.0], "accuracy": 0.5, "questions": 2, "config": {"strategy": "greedy", "n": 1}}
    monkeypatch.setattr("curator.evaluate.run.run_eval", lambda config: EvalResult(metrics, Path("o/p.parquet"), 1))
    argv = ["eval", "--model", "m", "--data", "d", "--task", "t", "--strategy", "greedy", "--output", "o"]
    assert cli.main(argv, prog_name="curator", standalone_mode=False) == 1
