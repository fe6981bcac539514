"""A small OpenAI-compatible server for tests and benchmarks, on loopback.

It implements ``POST /v1/completions`` and ``POST /v1/chat/completions`` (plus
``GET /v1/models`` and ``GET /stats``) well enough for any OpenAI client, with
outputs that are a pure function of the request, so a run against it is
reproducible whatever the concurrency. Faults are injected on purpose: the
first attempts of every distinct request can fail with a 429, a 500, a slow
answer, a dropped connection or a garbage body, and prompts containing a
``poison`` string always fail, so retries and failure records can be tested.

The "model" answers a question by adding up the numbers in it (and, when
sampling, sometimes getting it wrong by one), writes a step-by-step
rationale, and answers ``Therefore, the answer is`` with the last number of
the rationale. A plugin author can test a backend or an evaluator against it::

    with OpenAIStubServer(StubConfig(faults=("429",))) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")

``python -m curator.testing.openai_server --port 8000`` runs it standalone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from curator.backend import Gauge

ANSWER_PROMPT = "Therefore, the answer is"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_TOKEN = re.compile(r"\s*\S+|\s+$")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error"}


@dataclass(frozen=True)
class StubConfig:
    """How the stub behaves; the defaults answer every request at once, correctly."""

    supports_n: bool = True
    honour_stop: bool = True
    delay: float = 0.0
    faults: tuple[str, ...] = ()
    """Per distinct request body, what its first attempts get, in order: ``429``,
    ``500``, ``slow``, ``drop``, ``garbage`` (invalid JSON), ``wrong-shape``
    (JSON without choices) or ``html`` (not JSON at all)."""
    slow_seconds: float = 3.0
    poison: str | None = None
    retry_after_ms: int = 5
    api_key: str | None = None
    """When set, a request without ``Authorization: Bearer <api_key>`` gets a 401
    whose message quotes the key it was sent, as OpenAI's does."""
    max_model_len: int | None = None
    """A context length in stub tokens: as vLLM does, ``max_tokens`` is silently
    lowered to what the prompt leaves, and ``/models`` reports it."""
    chat_template: bool = True
    """False: chat requests get the 400 vLLM sends for a model folder without a chat template."""
    adapters: tuple[tuple[str, str], ...] = ()
    """``(name, folder)`` of LoRA adapters to list in ``/models`` over the base,
    as ``vllm serve --lora-modules name=folder`` does."""


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def stub_text(context: str, answer_turn: bool, temperature: float, seed: Any, index: int) -> str:
    """The stub model's continuation: a rationale, or for an answer turn the last number seen."""
    if answer_turn:
        numbers = _NUMBER.findall(context)
        return f" {numbers[-1] if numbers else 0}."
    question = context.rsplit("Q:", 1)[-1].split("\nA:", 1)[0]
    numbers = [int(float(x)) for x in _NUMBER.findall(question)][:4] or [0]
    total = sum(numbers)
    if temperature > 0:
        total += (0, 0, 1, -1)[_digest(context, seed, index) % 4]
    steps = " + ".join(str(x) for x in numbers)
    return f" We add the numbers: {steps} = {total}. The answer is {total}.\n\nQ: What comes next?\nA: More."


def _choice(
    context: str, answer_turn: bool, body: dict[str, Any], index: int, config: StubConfig, room: int | None
) -> dict:
    text = stub_text(context, answer_turn, float(body.get("temperature") or 0.0), body.get("seed"), index)
    tokens = _tokens(text)
    finish = "stop"
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    if config.honour_stop and stops:
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        if cut >= 0:
            kept, length = [], 0
            for token in tokens:
                if length + len(token) > cut:
                    break
                kept.append(token)
                length += len(token)
            tokens = kept
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if room is not None:
        max_tokens = room if max_tokens is None else min(int(max_tokens), room)
    if max_tokens is not None and len(tokens) > int(max_tokens):
        tokens, finish = tokens[: int(max_tokens)], "length"
    text = "".join(tokens)
    logprobs = [-((_digest(token, i) % 1000) / 1000.0) for i, token in enumerate(tokens)]
    choice: dict[str, Any] = {"index": index, "finish_reason": finish}
    wants_logprobs = body.get("logprobs") not in (None, False)
    if "messages" in body:
        choice["message"] = {"role": "assistant", "content": text}
        content = [{"token": t, "logprob": lp} for t, lp in zip(tokens, logprobs)]
        choice["logprobs"] = {"content": content} if wants_logprobs else None
    else:
        choice["text"] = text
        choice["logprobs"] = {"tokens": tokens, "token_logprobs": logprobs} if wants_logprobs else None
    return choice


def respond(body: dict[str, Any], config: StubConfig) -> dict[str, Any]:
    """The JSON answer to a completions or chat completions request body."""
    if "messages" in body:
        messages = body["messages"]
        context = "\n".join(str(m.get("content", "")) for m in messages)
        answer_turn = str(messages[-1].get("content", "")).strip().startswith(ANSWER_PROMPT)
    else:
        context = str(body.get("prompt", ""))
        answer_turn = context.rstrip().endswith(ANSWER_PROMPT)
    n = int(body.get("n") or 1) if config.supports_n else 1
    room = None if config.max_model_len is None else max(config.max_model_len - len(_tokens(context)), 0)
    choices = [_choice(context, answer_turn, body, i, config, room) for i in range(n)]
    completion_tokens = sum(len(_tokens(c.get("text") or c.get("message", {}).get("content", ""))) for c in choices)
    usage = {"prompt_tokens": len(_tokens(context)), "completion_tokens": completion_tokens}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    kind = "chat.completion" if "messages" in body else "text_completion"
    return {"id": f"stub-{_digest(json.dumps(body, sort_keys=True)):x}", "object": kind,
            "model": body.get("model", "stub"), "choices": choices, "usage": usage}


class OpenAIStubServer:
    """The stub, served from a background thread (``with`` starts and stops it)."""

    def __init__(self, config: StubConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or StubConfig()
        self.host, self.port = host, port
        self.in_flight = Gauge()
        self.statuses: Counter[str] = Counter()
        self._attempts: Counter[int] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        return {"requests": sum(self.statuses.values()), "statuses": dict(self.statuses),
                "mean_in_flight": self.in_flight.mean, "peak_in_flight": self.in_flight.peak}

    async def serve(self) -> asyncio.Server:
        """Start listening on the running loop (for use without the thread)."""
        self._server = await asyncio.start_server(self._connection, self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    def start(self) -> OpenAIStubServer:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-stub", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._server is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    async def _shutdown(self) -> None:
        """Stop listening and end the connections still open (a slow answer, a keep-alive)."""
        assert self._server is not None
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> OpenAIStubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    break
                method, path = line.decode("latin-1").split()[:2]
                headers = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", 0))
                body = await reader.readexactly(length) if length else b""
                with self.in_flight:
                    reply = await self._reply(method, path.split("?")[0], body, headers.get("authorization", ""))
                if reply is None:  # a dropped connection
                    break
                status, content_type, payload, extra = reply
                if path.split("?")[0].endswith("/completions"):  # what the stats count: completion requests
                    self.statuses[str(status)] += 1
                head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", f"content-type: {content_type}",
                        f"content-length: {len(payload)}", *extra]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def _models(self) -> dict[str, Any]:
        """What vLLM's ``/v1/models`` says: the base, then each adapter with its folder and its base."""
        limit = {"max_model_len": self.config.max_model_len} if self.config.max_model_len else {}
        models = [{"id": "stub", "object": "model", "root": "stub", "parent": None, **limit}]
        models += [{"id": name, "object": "model", "root": folder, "parent": "stub"}  # vLLM: no length here
                   for name, folder in self.config.adapters]
        return {"object": "list", "data": models}

    async def _reply(
        self, method: str, path: str, body: bytes, authorization: str
    ) -> tuple[int, str, bytes, list[str]] | None:
        if method == "GET" and path == "/stats":
            return 200, "application/json", json.dumps(self.stats()).encode(), []
        if method == "GET" and path.endswith("/models"):
            return 200, "application/json", json.dumps(self._models()).encode(), []
        if method != "POST" or not path.endswith(("/completions", "/chat/completions")):
            return 404, "application/json", b'{"error":{"message":"no such endpoint"}}', []
        config = self.config
        if config.api_key is not None and authorization != f"Bearer {config.api_key}":
            sent = authorization.removeprefix("Bearer ")
            refusal: dict[str, Any] = {"error": {"message": f"Incorrect API key provided: {sent}", "type": "invalid_request_error"}}
            return 401, "application/json", json.dumps(refusal).encode(), []
        request = json.loads(body)
        if not config.chat_template and "messages" in request:
            refusal = {"error": {"message": "As of transformers v4.44, default chat template is no longer allowed, "
                                            "so you must provide a chat template if the tokenizer does not define one.",
                                 "type": "BadRequestError", "code": 400}}
            return 400, "application/json", json.dumps(refusal).encode(), []
        key = _digest(body)
        attempt = self._attempts[key]
        self._attempts[key] += 1
        fault = config.faults[attempt] if attempt < len(config.faults) else None
        if config.poison and config.poison in body.decode():
            fault = "500"
        if config.delay:
            await asyncio.sleep(config.delay)
        retry_after = [f"retry-after-ms: {config.retry_after_ms}"]
        if fault in ("429", "500"):
            message = json.dumps({"error": {"message": f"injected {fault}", "type": "stub"}}).encode()
            return int(fault), "application/json", message, retry_after
        if fault == "drop":
            return None
        if fault == "garbage":
            return 200, "application/json", b'{"choices": [{"text": "trunc', []
        if fault == "wrong-shape":
            return 200, "application/json", b'{"object": "text_completion", "data": 1}', []
        if fault == "html":
            return 200, "text/html", b"<html><body>502 Bad Gateway</body></html>", []
        if fault == "slow":
            await asyncio.sleep(config.slow_seconds)
        return 200, "application/json", json.dumps(respond(request, config)).encode(), []


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted; prints the base URL on its first line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--no-n", action="store_true", help="ignore n: one choice per request")
    parser.add_argument("--faults", default="", help="comma-separated faults for each request's first attempts")
    parser.add_argument("--poison", default=None)
    args = parser.parse_args(argv)
    faults = tuple(f for f in args.faults.split(",") if f)
    server = OpenAIStubServer(StubConfig(supports_n=not args.no_n, delay=args.delay, faults=faults,
                                         poison=args.poison), args.host, args.port)

    async def serve() -> None:
        await server.serve()
        print(server.base_url, flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
