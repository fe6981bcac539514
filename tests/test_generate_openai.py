"""The openai backend against a real HTTP server on loopback, faults included."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("openai")

import curator_plugins.openai_backend as openai_backend  # noqa: E402
from curator.backend import BackendOptions, Request, Result, SamplingParams, stream_results  # noqa: E402
from curator.errors import CuratorError  # noqa: E402
from curator.testing.openai_server import OpenAIStubServer, StubConfig, respond  # noqa: E402

QUESTION = "Q: Tom has 3 apples and buys 4 more. How many?\nA:"


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    monkeypatch.setattr(openai_backend, "RETRY_DELAY", 0.01)


def _complete(server: OpenAIStubServer, requests: list[Request], **options) -> list[Result]:
    options = {"retries": 3, **options}
    backend = openai_backend.OpenAIBackend(BackendOptions(model="stub", base_url=server.base_url, **options))

    async def run() -> list[Result]:
        async with backend:
            return [r async for r in stream_results(backend, requests)]

    return sorted(asyncio.run(run()), key=lambda r: str(r.request.key))


def _request(n: int = 1, temperature: float = 0.0, prompt: str = QUESTION, **params) -> Request:
    return Request.single_turn(prompt, SamplingParams(n=n, temperature=temperature, logprobs=True, **params))


def test_n_samples_in_one_request_with_logprobs_and_usage(stub):
    server = stub()
    [result] = _complete(server, [_request(n=3, temperature=0.7, seed=11, stop=("\nQ:",))])
    assert result.ok and len(result.completions) == 3
    assert server.stats()["requests"] == 1
    expected = respond({"prompt": QUESTION, "n": 3, "temperature": 0.7, "seed": 11, "logprobs": 1,
                        "stop": ["\nQ:"]}, StubConfig())
    for completion, choice in zip(result.completions, expected["choices"]):
        assert completion.text == choice["text"]
        assert "\nQ:" not in completion.text and completion.text.endswith("The answer is " + choice["text"][-2:])
        assert completion.logprob == pytest.approx(sum(choice["logprobs"]["token_logprobs"]))
        assert completion.n_tokens == len(choice["logprobs"]["tokens"])
    assert result.usage.completion_tokens == expected["usage"]["completion_tokens"]


def test_a_server_that_ignores_n_gets_one_request_per_sample(stub):
    server = stub(supports_n=False)
    results = _complete(server, [_request(n=4, temperature=1.0, seed=1, prompt=f"Q: {i} + 5?\nA:") for i in range(3)])
    assert all(r.ok and len(r.completions) == 4 for r in results)
    # seeds are offset per sample, so the samples differ as they would with n
    assert len({c.text for r in results for c in r.completions}) > 3
    # one request learns the server's limit: 4 + 3 + 3 + (at most 2 more racing it) requests
    assert 12 <= server.stats()["requests"] <= 14


def test_stop_is_applied_when_the_server_does_not(stub):
    server = stub(honour_stop=False)
    [result] = _complete(server, [_request(stop=("\nQ:",))])
    [full] = _complete(server, [_request()])
    completion = result.completions[0]
    assert full.completions[0].text.startswith(completion.text) and "\nQ:" in full.completions[0].text
    assert completion.text == " We add the numbers: 3 + 4 = 7. The answer is 7.\n"
    assert completion.n_tokens < full.completions[0].n_tokens
    assert completion.finish_reason == "stop"


def test_chat_messages_and_chat_logprobs(stub):
    server = stub()
    [result] = _complete(server, [_request(n=2)], chat=True)
    assert [c.text for c in result.completions] == [" We add the numbers: 3 + 4 = 7. The answer is 7.\n\n"
                                                    "Q: What comes next?\nA: More."] * 2
    assert result.completions[0].logprob < 0 and result.completions[0].n_tokens == 19


@pytest.mark.parametrize("fault", ["429", "500", "drop", "garbage", "wrong-shape", "html"])
def test_transient_faults_are_retried(stub, fault):
    server = stub(faults=(fault, fault))
    [result] = _complete(server, [_request(n=2, temperature=0.5, seed=3)])
    [clean] = _complete(stub(), [_request(n=2, temperature=0.5, seed=3)])
    assert result.ok, result.error
    assert result.completions == clean.completions
    assert server.stats()["requests"] == 3 - (fault == "drop") * 2


def test_slow_answers_time_out_and_are_retried(stub):
    server = stub(faults=("slow",), slow_seconds=5.0)
    started = time.perf_counter()
    [result] = _complete(server, [_request()], timeout=0.3)
    assert result.ok and time.perf_counter() - started < 3.0


def test_requests_that_keep_failing_come_back_as_errors(stub):
    server = stub(poison="POISON")
    results = _complete(server, [_request(prompt="Q: POISON 1?\nA:"), _request()], retries=2)
    failed, ok = sorted(results, key=lambda r: r.ok)
    assert ok.ok and not failed.ok
    assert failed.error.startswith("HTTP 500") and failed.completions == ()
    assert server.stats()["statuses"]["500"] == 3  # the first try and two retries


def test_sliding_window_of_requests_in_flight(stub):
    server = stub(delay=0.3)  # long against the client's own work, so a loaded machine cannot blur the window
    results = _complete(server, [_request(prompt=f"Q: {i}?\nA:") for i in range(64)], concurrency=16)
    assert all(r.ok for r in results)
    # The window as the server saw it (no wall-clock bound: the machine's load would decide it).
    assert server.stats()["peak_in_flight"] == 16
    assert server.stats()["mean_in_flight"] > 10


def test_a_wrong_api_key_stops_the_run_without_showing_the_key(stub, monkeypatch):
    server = stub(api_key="right-key")
    monkeypatch.setenv("CURATOR_TEST_KEY", "sk-wrong-secret-123")
    with pytest.raises(CuratorError, match="answered 401") as caught:
        _complete(server, [_request()], api_key_env="CURATOR_TEST_KEY")
    assert "sk-wrong-secret-123" not in str(caught.value)
    monkeypatch.setenv("CURATOR_TEST_KEY", "right-key")
    assert _complete(server, [_request()], api_key_env="CURATOR_TEST_KEY")[0].ok


def test_openai_itself_needs_a_key(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    backend = openai_backend.OpenAIBackend(BackendOptions(model="gpt", api_key_env="NO_SUCH_KEY_VAR"))
    with pytest.raises(CuratorError, match=r"needs an API key in \$NO_SUCH_KEY_VAR"):
        asyncio.run(backend.open())


def test_greedy_samples_are_asked_for_once_and_repeated(stub):
    server = stub()
    [result] = _complete(server, [_request(n=3, temperature=0.0)])
    assert server.stats()["requests"] == 1
    assert len(result.completions) == 3 and len({c.text for c in result.completions}) == 1
    # the server was asked for one sample (vLLM refuses n > 1 when greedy)
    [single] = _complete(stub(), [_request(n=1, temperature=0.0)])
    assert result.completions == single.completions * 3


def test_an_adapter_folder_is_refused_with_how_to_serve_it(stub):
    backend = openai_backend.OpenAIBackend(BackendOptions(model="m", base_url=stub().base_url,
                                                          extra={"adapter": "out/adapter"}))
    with pytest.raises(CuratorError, match=r"serve it \(vLLM: --enable-lora --lora-modules NAME=DIR\)"):
        asyncio.run(backend.open())


def test_requests_go_through_the_openai_client_with_its_headers(stub, monkeypatch):
    """The aiohttp carrier sends what the openai client built: its auth header, its retries, its errors."""
    server = stub(api_key="k-123", faults=("429",))
    monkeypatch.setenv("CURATOR_TEST_KEY", "k-123")
    [result] = _complete(server, [_request()], api_key_env="CURATOR_TEST_KEY")
    assert result.ok and server.stats()["statuses"] == {"429": 1, "200": 1}


@pytest.mark.parametrize("fault", ["429", "drop", "slow"])
def test_without_aiohttp_the_openai_clients_own_pool_does_the_same(stub, monkeypatch, fault):
    def no_aiohttp(*args, **kwargs):
        raise ImportError("aiohttp")

    monkeypatch.setattr(openai_backend, "aiohttp_client", no_aiohttp)
    server = stub(faults=(fault,), slow_seconds=5.0)
    [result] = _complete(server, [_request(n=2, temperature=0.5, seed=3)], timeout=0.5)
    [clean] = _complete(stub(), [_request(n=2, temperature=0.5, seed=3)])
    assert result.ok and result.completions == clean.completions


def test_plain_requests_take_the_aiohttp_path(stub):
    """Completion requests are carried by aiohttp, not httpx's pool (a silent fallback would cost 2x the CPU)."""
    server = stub()
    backend = openai_backend.OpenAIBackend(BackendOptions(model="stub", base_url=server.base_url))
    carried = []

    async def run() -> Result:
        async with backend:
            http = backend._client._client
            send = http.send

            async def spy(request, **kwargs):
                carried.append("curator.aiohttp" in request.extensions)
                return await send(request, **kwargs)

            http.send = spy
            return await backend.complete(_request(n=2, temperature=0.5))

    assert asyncio.run(run()).ok and carried == [True]
