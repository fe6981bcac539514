"""The ``openai`` backend: any OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, llama.cpp).

One shared async client serves every request. At most ``concurrency``
requests are at the server at once, each sent as soon as a slot frees (no
per-batch barrier). The openai client retries 429s, 5xx, timeouts and dropped
connections with backoff (honouring ``Retry-After``); this module adds the
same number of retries for bodies that are not a valid completion, which the
client would otherwise hand back as they are. ``n`` samples go in one request
while the server returns them all; a server that returns fewer is asked for
the rest, and from then on gets one request per sample, with the seed
offset per sample so they differ.

The API key is read from the environment variable named by ``api_key_env``
and appears nowhere else: not in the manifest, not in logs, and it is scrubbed
from error messages. ``--backend-option KEY=VALUE`` pairs go in the request
body (``top_k=20``, ``repetition_penalty=1.05`` for vLLM).

The client's connection pool scans all its connections for every request, so
at hundreds of connections that scan costs more than the request; the pool is
therefore split into small shards behind one transport (one client still).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import random
from typing import Any
from urllib.parse import urlsplit

from curator import CuratorError, MissingDependency, RegisterBackend, hookimpl
from curator.backend import Backend, BackendOptions, Completion, Request, Result, Usage

SHARD_CONNECTIONS = 8
RETRY_DELAY = 0.5
"""Seconds before the first retry of a malformed answer; doubled each time, at most 8."""
FATAL_STATUSES = {401: "unauthorized", 403: "forbidden", 404: "not found"}


class MalformedResponse(Exception):
    """A 200 answer that is not a completion."""


class OpenAIBackend(Backend):
    """Chat or completions requests to an OpenAI-compatible server."""

    name = "openai"

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self._client: Any = None
        self._slots: asyncio.Semaphore | None = None
        self._key = ""
        self._max_n: int | None = None

    async def open(self) -> None:
        try:
            import openai
        except ImportError as exc:
            raise MissingDependency("openai", "the openai backend", "generate") from exc
        self._key = os.environ.get(self.options.api_key_env, "")
        if not self._key and self.options.base_url is None:
            raise CuratorError(
                f"the openai backend needs an API key in ${self.options.api_key_env} "
                "(or --base-url for a server that needs none)"
            )
        httpx = importlib.import_module(type(openai.DEFAULT_CONNECTION_LIMITS).__module__.partition(".")[0])
        transport = _sharded_transport(httpx, self.options.concurrency)
        self._client = openai.AsyncOpenAI(
            api_key=self._key or "none",
            base_url=self.options.base_url,
            max_retries=self.options.retries,
            timeout=self.options.timeout,
            http_client=openai.DefaultAsyncHttpxClient(transport=transport, timeout=self.options.timeout),
        )
        self._slots = asyncio.Semaphore(self.options.concurrency)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "base_url": _without_credentials(self.options.base_url),
            "api": "chat" if self.options.chat else "completions",
            "api_key_env": self.options.api_key_env,
            "samples_per_request": self._max_n,
        }

    async def complete(self, request: Request) -> Result:
        import openai

        wanted = request.params.n
        completions: list[Completion] = []
        usage = Usage()
        try:
            while len(completions) < wanted:
                missing = wanted - len(completions)
                step = min(missing, self._max_n or missing)
                sizes = [step] * (missing // step) + ([missing % step] if missing % step else [])
                offsets = [len(completions) + sum(sizes[:i]) for i in range(len(sizes))]
                calls = [self._call(request, size, offset) for size, offset in zip(sizes, offsets)]
                for asked, (got, call_usage) in zip(sizes, await asyncio.gather(*calls)):
                    if len(got) < asked:
                        self._max_n = min(self._max_n or asked, len(got))
                    completions.extend(got)
                    usage += call_usage
        except openai.APIStatusError as exc:
            if exc.status_code in FATAL_STATUSES:
                raise CuratorError(
                    f"the server at {_without_credentials(self.options.base_url) or 'api.openai.com'} answered "
                    f"{exc.status_code} ({FATAL_STATUSES[exc.status_code]}): {self._scrub(exc.message)}"
                ) from None
            return Result(request, usage=usage, error=f"HTTP {exc.status_code}: {self._scrub(exc.message)}")
        except (openai.APIConnectionError, MalformedResponse) as exc:
            return Result(request, usage=usage, error=f"{type(exc).__name__}: {self._scrub(str(exc))}")
        return Result(request, tuple(completions[:wanted]), usage)

    async def _call(self, request: Request, n: int, offset: int) -> tuple[list[Completion], Usage]:
        """One HTTP request for ``n`` samples, retried while its body is malformed."""
        assert self._slots is not None
        chat = self.options.chat
        endpoint = self._client.chat.completions if chat else self._client.completions
        arguments = self._arguments(request, n, offset)
        for attempt in range(self.options.retries + 1):
            async with self._slots:
                with self.in_flight:
                    raw = await endpoint.with_raw_response.create(**arguments)
                    body = raw.http_response.content
            try:
                return _parse(body, chat, request.params.stop)
            except MalformedResponse:
                if attempt == self.options.retries:
                    raise
            await asyncio.sleep(min(RETRY_DELAY * 2**attempt, 8.0) * (1 - 0.25 * random.random()))
        raise AssertionError("unreachable")

    def _arguments(self, request: Request, n: int, offset: int) -> dict[str, Any]:
        params = request.params
        arguments: dict[str, Any] = {
            "model": self.options.model,
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if self.options.chat:
            arguments["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            if params.logprobs:
                arguments["logprobs"] = True
        else:
            arguments["prompt"] = request.prompt
            if params.logprobs:
                arguments["logprobs"] = 1
        if params.stop:
            arguments["stop"] = list(params.stop)
        if params.seed is not None:
            arguments["seed"] = params.seed + offset
        if self.options.extra:
            arguments["extra_body"] = dict(self.options.extra)
        return arguments

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if len(self._key) >= 4 else text


def _without_credentials(url: str | None) -> str | None:
    """A URL fit for the manifest: no ``user:password@``."""
    if url is None:
        return None
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _parse(body: bytes, chat: bool, stop: tuple[str, ...]) -> tuple[list[Completion], Usage]:
    """Completions and usage from a response body; :class:`MalformedResponse` when it is not one."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise MalformedResponse(f"body is not JSON: {body[:80]!r}") from exc
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        raise MalformedResponse(f"no choices in body: {body[:80]!r}")
    completions = []
    for choice in sorted(choices, key=lambda c: c.get("index") if isinstance(c.get("index"), int) else 0):
        if chat:
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            text = "" if text is None and isinstance(message, dict) else text
        else:
            text = choice.get("text")
        if not isinstance(text, str):
            raise MalformedResponse(f"a choice has no text: {str(choice)[:80]}")
        completions.append(_completion(text, choice, chat, stop))
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    if len(completions) == 1 and completions[0].n_tokens is None and tokens.completion_tokens:
        completions[0] = Completion(completions[0].text, None, tokens.completion_tokens, completions[0].finish_reason)
    return completions, tokens


def _completion(text: str, choice: dict[str, Any], chat: bool, stop: tuple[str, ...]) -> Completion:
    """One choice, cut at a stop string when the server did not stop there itself."""
    tokens, logprobs = _token_logprobs(choice.get("logprobs"), chat)
    finish = choice.get("finish_reason")
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    if cut >= 0:
        text, finish = text[:cut], "stop"
        if tokens is not None and logprobs is not None:
            kept, length = 0, 0
            while kept < len(tokens) and length < cut:
                length += len(tokens[kept])
                kept += 1
            tokens, logprobs = tokens[:kept], logprobs[:kept]
    if logprobs is None:
        return Completion(text, None, None, finish)
    return Completion(text, float(sum(logprobs)), len(logprobs), finish)


def _token_logprobs(block: Any, chat: bool) -> tuple[list[str] | None, list[float] | None]:
    """Token strings and their log-probabilities, when the server sent them."""
    if not isinstance(block, dict):
        return None, None
    if chat:
        content = block.get("content")
        if not isinstance(content, list):
            return None, None
        pairs: list[tuple[str, Any]] = [(str(t.get("token", "")), t.get("logprob")) for t in content if isinstance(t, dict)]
    else:
        pairs = list(zip(block.get("tokens") or [], block.get("token_logprobs") or []))
    if not pairs or any(not isinstance(lp, (int, float)) for _, lp in pairs):
        return None, None
    return [t for t, _ in pairs], [float(lp) for _, lp in pairs]


def _sharded_transport(httpx: Any, connections: int) -> Any:
    """A transport spreading requests over pools of a few connections, least busy first."""

    class Release(httpx.AsyncByteStream):
        def __init__(self, stream: Any, release: Any) -> None:
            self._stream, self._release = stream, release

        async def __aiter__(self) -> Any:
            async for chunk in self._stream:
                yield chunk

        async def aclose(self) -> None:
            if self._release is not None:
                self._release()
                self._release = None
            await self._stream.aclose()

    class ShardedTransport(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            shards = max(1, -(-connections // SHARD_CONNECTIONS))
            limits = httpx.Limits(max_connections=SHARD_CONNECTIONS, max_keepalive_connections=SHARD_CONNECTIONS)
            tls = httpx.create_ssl_context()  # one for all: building one costs tens of milliseconds
            self._pools = [httpx.AsyncHTTPTransport(limits=limits, verify=tls) for _ in range(shards)]
            self._busy = [0] * shards

        async def handle_async_request(self, request: Any) -> Any:
            shard = min(range(len(self._busy)), key=self._busy.__getitem__)
            self._busy[shard] += 1
            try:
                response = await self._pools[shard].handle_async_request(request)
            except BaseException:
                self._busy[shard] -= 1
                raise

            def release() -> None:
                self._busy[shard] -= 1

            response.stream = Release(response.stream, release)
            return response

        async def aclose(self) -> None:
            for pool in self._pools:
                await pool.aclose()

    return ShardedTransport()


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register(OpenAIBackend)
