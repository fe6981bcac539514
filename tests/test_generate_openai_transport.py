"""The openai client's copied requests: byte for byte what the client builds, and only where it would."""

from __future__ import annotations

import asyncio

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("aiohttp")

from openai._models import FinalRequestOptions  # noqa: E402

from curator.backend import BackendOptions, Request, SamplingParams, stream_results  # noqa: E402
from curator_plugins import openai_backend  # noqa: E402
from curator_plugins.openai_transport import CARRIED, aiohttp_client, openai_client  # noqa: E402

httpx = __import__(type(openai.DEFAULT_CONNECTION_LIMITS).__module__.partition(".")[0])
BASE = "http://127.0.0.1:9/v1"
BODIES = [{"model": "m", "prompt": f"Q: {i} pommes, café?\nA:", "n": 4, "temperature": 0.7, "top_p": 1.0,
           "stop": ["\nQ:"], "seed": 1000 + i} for i in range(3)]


def _client() -> object:
    return openai_client(openai, api_key="sk-test-key", base_url=BASE, max_retries=2, timeout=30.0,
                         http_client=aiohttp_client(httpx, 4, 30.0))


def _options(body: dict, **fields: object) -> FinalRequestOptions:
    options = FinalRequestOptions.construct(method="post", url=f"{BASE}/completions", json_data=body, **fields)
    options.idempotency_key = f"stainless-python-retry-{body['seed']}"  # what the client's request() adds
    return options


def _wire(request) -> tuple:
    url, headers, content = request.extensions[CARRIED]
    return (request.method, str(request.url), request.headers.raw, request.extensions["timeout"], str(url),
            headers, content)


def _count_copies(client, monkeypatch) -> list[bytes]:
    copies: list[bytes] = []
    with_body = client._client.with_body

    def spy(request, content):
        copies.append(content)
        return with_body(request, content)

    monkeypatch.setattr(client._client, "with_body", spy)
    return copies


def test_a_copied_request_is_the_one_the_client_builds(monkeypatch):
    client = _client()
    copies = _count_copies(client, monkeypatch)
    for retries in (0, 1):
        for body in BODIES:
            ours = client._build_request(_options(body), retries_taken=retries)
            theirs = openai.AsyncOpenAI._build_request(client, _options(body), retries_taken=retries)
            assert _wire(ours) == _wire(theirs)
            assert ours.headers["x-stainless-retry-count"] == str(retries)
            assert ours.headers["user-agent"].startswith("AsyncOpenAI/Python")
    assert len(copies) == 4  # the first request of each retry count is the client's own


def test_per_call_options_and_changing_headers_are_left_to_the_client(monkeypatch):
    client = _client()
    copies = _count_copies(client, monkeypatch)
    client._build_request(_options(BODIES[0]))
    short = client._build_request(_options(BODIES[1], timeout=5.0))
    assert short.headers["x-stainless-read-timeout"] == "5.0" and short.extensions["timeout"]["read"] == 5.0
    traced = client._build_request(_options(BODIES[1], headers={"X-Trace": "t-1"}))
    assert traced.headers["x-trace"] == "t-1"
    assert copies == []

    keyed = _client()  # a client that sends each request's own idempotency key: no two requests are alike
    keyed._idempotency_header = "Idempotency-Key"
    copies = _count_copies(keyed, monkeypatch)
    sent = [keyed._build_request(_options(body)).headers["idempotency-key"] for body in BODIES]
    assert sent == [f"stainless-python-retry-{body['seed']}" for body in BODIES] and copies == []


def test_copied_requests_carry_the_key_and_are_retried(stub, monkeypatch):
    monkeypatch.setattr(openai_backend, "RETRY_DELAY", 0.01)
    monkeypatch.setenv("CURATOR_TEST_KEY", "k-123")
    server = stub(api_key="k-123", faults=("429", "500"))  # every distinct body: a 429, a 500, then its answer
    backend = openai_backend.OpenAIBackend(BackendOptions(model="stub", base_url=server.base_url, retries=3,
                                                          api_key_env="CURATOR_TEST_KEY"))
    requests = [Request.single_turn(f"Q: {i} + 2?\nA:", SamplingParams(n=2, temperature=0.5, seed=i))
                for i in range(4)]

    async def run() -> tuple[list, list[bytes]]:
        async with backend:
            copies = _count_copies(backend._client, monkeypatch)
            return [r async for r in stream_results(backend, requests)], copies

    results, copies = asyncio.run(run())
    assert all(r.ok for r in results), [r.error for r in results]
    assert server.stats()["statuses"] == {"429": 4, "500": 4, "200": 4}
    assert len(copies) == 9  # 12 requests sent; the first of each retry count built by the client
