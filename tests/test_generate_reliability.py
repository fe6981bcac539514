"""``curator generate`` where runs meet edited inputs, greedy n, short contexts, adapters and dying servers."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("openai")

from helpers_cli import exit_code  # noqa: E402

from curator.testing.openai_server import OpenAIStubServer, StubConfig  # noqa: E402


def _write(path: Path, questions: list[dict]) -> Path:
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return path


def _questions(count: int, ids: bool = True) -> list[dict]:
    rows = [{"question": f"Ann has {i} pens and gets {i + 2} more. How many?", "answer": f"#### {2 * i + 2}"}
            for i in range(count)]
    return [{"id": f"q{i}", **row} for i, row in enumerate(rows)] if ids else rows


def _args(questions: Path, output: Path, base_url: str, *extra: str) -> list[str]:
    return ["generate", "--input", str(questions), "--output", str(output), "--task", "gsm8k",
            "--backend", "openai", "--model", "stub", "--base-url", base_url, "--prompt", "few-shot-cot",
            "--no-progress", "--retries", "1", *extra]


@pytest.mark.parametrize("ids", [True, False], ids=["with-ids", "ids-from-text"])
def test_a_question_edited_in_place_is_generated_again_and_the_others_are_not(stub, tmp_path, ids):
    server = stub()
    rows = _questions(4, ids)
    path = _write(tmp_path / "q.jsonl", rows)
    out = tmp_path / "out"
    assert exit_code(_args(path, out, server.base_url)) == 0
    before = pq.read_table(out / "candidates.parquet").to_pylist()
    sent = server.stats()["requests"]

    rows[2]["question"] = "Ann has 40 pens and gets 2 more. How many?"
    rows[2]["answer"] = "#### 42"
    rows[0]["answer"] = "#### 999"  # a corrected gold answer needs no new samples
    _write(path, rows)
    assert exit_code(_args(path, out, server.base_url)) == 0
    assert server.stats()["requests"] == sent + 1  # just the edited question
    after = pq.read_table(out / "candidates.parquet").to_pylist()
    assert [r["question"] for r in after] == [r["question"] for r in rows]
    assert after[2]["rationale"] == " We add the numbers: 40 + 2 = 42. The answer is 42."
    assert after[2]["answer"] == after[2]["reference"] == "42"
    assert after[0]["reference"] == "999" and after[0]["rationale"] == before[0]["rationale"]
    assert [after[i] for i in (1, 3)] == [before[i] for i in (1, 3)]
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["done_before"] == 3 and counts["generated"] == 1 and counts["rows"] == 4
    assert counts["changed"] == (1 if ids else 0)  # without ids an edited question is a new one


def test_an_edited_question_whose_new_request_fails_keeps_no_stale_samples(stub, tmp_path):
    rows = _questions(3)
    path = _write(tmp_path / "q.jsonl", rows)
    out = tmp_path / "out"
    assert exit_code(_args(path, out, stub().base_url)) == 0
    rows[1]["question"] = "POISON " + rows[1]["question"]
    _write(path, rows)
    assert exit_code(_args(path, out, stub(poison="POISON").base_url)) == 1
    table = pq.read_table(out / "candidates.parquet")
    assert table["id"].to_pylist() == ["q0", "q2"]  # q1's old samples answer a question no longer asked
    assert exit_code(_args(path, out, stub().base_url)) == 0
    assert pq.read_table(out / "candidates.parquet")["question"].to_pylist() == [r["question"] for r in rows]


def test_an_empty_question_file_exits_2_with_one_line(stub, tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    assert exit_code(_args(path, tmp_path / "out", stub().base_url)) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"curator: error: {path}: no questions"
    assert not (tmp_path / "out" / "candidates.parquet").exists()


def test_several_samples_at_temperature_0_are_refused_up_front(stub, tmp_path, capsys):
    server = stub()
    assert exit_code(_args(_write(tmp_path / "q.jsonl", _questions(2)), tmp_path / "out", server.base_url,
                      "--n", "4")) == 2
    err = capsys.readouterr().err
    assert "--n 4 at --temperature 0" in err and "--temperature above 0" in err and len(err.splitlines()) == 1
    assert server.stats()["requests"] == 0


def test_help_says_n_needs_a_temperature():
    from click.testing import CliRunner

    from curator.cli import cli

    text = " ".join(CliRunner().invoke(cli, ["generate", "--help"]).output.split())
    assert "--n N needs --temperature above 0" in text


def test_samples_shortened_by_the_context_are_recorded_and_warned_about(stub, tmp_path):
    from curator.backend import SamplingParams
    from curator.generate.prompts import make_prompting
    from curator.testing.openai_server import _tokens

    rows = _questions(2)
    prompt = make_prompting("few-shot-cot", None, "gsm8k").first(rows[0]["question"], SamplingParams()).prompt
    server = stub(max_model_len=len(_tokens(prompt)) + 5)  # the prompt leaves room for 5 tokens, not 64
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match=r"2 samples stopped before --max-tokens 64: the prompt left less room"):
        assert exit_code(_args(_write(tmp_path / "q.jsonl", rows), out, server.base_url, "--max-tokens", "64")) == 0
    table = pq.read_table(out / "candidates.parquet")
    assert table["finish_reason"].to_pylist() == ["length", "length"]
    assert table["n_tokens"].to_pylist() == [5, 5]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["shortened_by_context"] == 2 and manifest["counts"]["truncated"] == 2
    assert manifest["backend"]["max_model_len"] == len(_tokens(prompt)) + 5
    assert "stopped before --max-tokens" in manifest["warnings"][0]


def test_a_served_lora_adapter_is_recorded_in_the_manifest(stub, tmp_path):
    server = stub(adapters=(("math-lora", "/adapters/math"),), max_model_len=4096)
    args = _args(_write(tmp_path / "q.jsonl", _questions(1)), tmp_path / "out", server.base_url)
    args[args.index("--model") + 1] = "math-lora"
    assert exit_code(args) == 0
    backend = json.loads((tmp_path / "out" / "manifest.json").read_text())["backend"]
    assert backend["adapter"] == {"name": "math-lora", "path": "/adapters/math", "base": "stub"}
    assert backend["max_model_len"] == 4096  # listed on the base only
    assert pq.read_table(tmp_path / "out" / "candidates.parquet")["model"].to_pylist() == ["math-lora"]


def test_an_api_key_in_the_base_url_query_is_not_written(stub, tmp_path):
    server = stub()
    secret = "sk-query-secret-42"
    url = f"http://user:pw-secret-7@127.0.0.1:{server.port}/v1?api-version=2024-06-01&api-key={secret}"
    out = tmp_path / "out"
    assert exit_code(_args(_write(tmp_path / "q.jsonl", _questions(1)), out, url)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"]["base_url"] == f"http://127.0.0.1:{server.port}/v1?api-version=2024-06-01&api-key=***"
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes() and b"pw-secret-7" not in path.read_bytes(), path


def test_a_server_that_goes_away_ends_the_run_with_one_line_and_keeps_what_finished(tmp_path, capsys):
    server = OpenAIStubServer(StubConfig(delay=0.05)).start()
    path = _write(tmp_path / "q.jsonl", _questions(40))
    out = tmp_path / "out"

    def stop_after_first_part() -> None:
        deadline = time.monotonic() + 30
        while not list((out / ".progress").glob("part-*.arrow")) and time.monotonic() < deadline:
            time.sleep(0.01)
        server.stop()

    stopper = threading.Thread(target=stop_after_first_part)
    stopper.start()
    try:
        code = exit_code(_args(path, out, server.base_url, "--concurrency", "2", "--flush-seconds", "0.05"))
    finally:
        stopper.join()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"curator: error: the server at {server.base_url} stopped accepting connections; what finished "
                   "is saved: start it again and re-run the same command to continue"]
    assert not (out / "candidates.parquet").exists()
    with OpenAIStubServer() as again:
        assert exit_code(_args(path, out, again.base_url, "--concurrency", "2")) == 0
        counts = json.loads((out / "manifest.json").read_text())["counts"]
        assert counts["done_before"] > 0 and counts["done_before"] + counts["generated"] == 40
        assert again.stats()["requests"] == counts["generated"]


def test_no_server_at_the_base_url_is_one_line(tmp_path, capsys):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    assert exit_code(_args(_write(tmp_path / "q.jsonl", _questions(1)), tmp_path / "out", url)) == 2
    assert capsys.readouterr().err.strip() == f"curator: error: no server answers at {url} (connection refused)"


def test_chat_against_a_server_without_a_chat_template_is_one_line(stub, tmp_path, capsys):
    server = stub(chat_template=False)
    args = _args(_write(tmp_path / "q.jsonl", _questions(3)), tmp_path / "out", server.base_url, "--chat")
    assert exit_code(args) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"curator: error: the server at {server.base_url} cannot answer chat requests")
    assert line.endswith("(serve a model folder with a chat template, or use --completions)")


def test_vllm_with_chat_on_a_folder_without_a_chat_template_stops_before_loading(tiny_llama, tmp_path, capsys):
    args = ["generate", "--input", str(_write(tmp_path / "q.jsonl", _questions(1))), "--output", str(tmp_path / "o"),
            "--task", "gsm8k", "--backend", "vllm", "--model", str(tiny_llama), "--chat", "--no-progress"]
    assert exit_code(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"curator: error: {tiny_llama}: the model folder has no chat template, which --chat needs "
        "(add chat_template.jinja or tokenizer_config.json 'chat_template'), or use --completions")


@pytest.mark.parametrize(
    ("files", "message"),
    [({}, "{folder}: not a PEFT adapter folder (no adapter_config.json)"),
     ({"adapter_config.json": "{}", "adapter_model.bin": ""}, "{folder}: no adapter_model.safetensors (pickled"),
     ({"adapter_config.json": '{"r": 0}', "adapter_model.safetensors": ""},
      "{folder}/adapter_config.json: LoRA rank 'r' must be an integer from 1 to 512, got 0")],
)
def test_vllm_refuses_adapters_it_cannot_or_should_not_load(tmp_path, files, message):
    from curator.errors import CuratorError
    from curator_plugins.vllm_backend import _read_adapter

    folder = tmp_path / "adapter"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(CuratorError) as caught:
        _read_adapter(folder)
    assert str(caught.value).startswith(message.format(folder=folder))


def test_eval_refuses_voting_over_greedy_samples():
    from curator.errors import CuratorError
    from curator.evaluate.run import EvalConfig

    with pytest.raises(CuratorError, match="at --temperature 0 all 4 are the greedy one"):
        EvalConfig(model="m", data="d", task="gsm8k", strategy="self-consistency", output="o", n=4, temperature=0)


def test_a_folder_written_before_finish_reason_existed_still_resumes(stub, tmp_path):
    rows = _questions(3)
    path = _write(tmp_path / "q.jsonl", rows[:2])
    out = tmp_path / "out"
    assert exit_code(_args(path, out, stub().base_url)) == 0
    old = pq.read_table(out / "candidates.parquet").drop_columns(["finish_reason"])
    pq.write_table(old, out / "candidates.parquet")  # as the version before this column wrote it
    _write(path, rows)
    assert exit_code(_args(path, out, stub().base_url)) == 0
    table = pq.read_table(out / "candidates.parquet")
    assert table["finish_reason"].to_pylist() == [None, None, "stop"]
