"""The ``openai`` backend: any OpenAI-compatible endpoint (OpenAI, vLLM, SGLang, llama.cpp).

One shared async client of the ``openai`` package serves every request,
carried by aiohttp when installed (``openai[aiohttp]``): at hundreds of
connections the default httpx pool costs more CPU than the request (see
:mod:`curator_plugins.openai_transport`, which also spares the client
re-building the same request for every question). At most
``concurrency`` requests are at the server at once, each sent as soon as a
slot frees (no per-batch barrier). The client retries 429s, 5xx, timeouts
and dropped connections with backoff (honouring ``Retry-After``); this
module adds the same number of retries for bodies that are not a valid
completion, which the client would otherwise hand back as they are.

Requests go through the client's ``post`` (``post_json``) with a plain JSON
body and come back as raw bytes parsed here: the typed ``create`` call validates and
copies every argument and every choice into objects that are thrown away at
once, which is most of its cost.

``n`` samples go in one request while the server returns them all; a server
that returns fewer is asked for the rest, and from then on gets one request
per sample, with the seed offset per sample so they differ. At temperature 0
the samples are all the greedy one, so one is asked for and repeated (vLLM
refuses ``n > 1`` with greedy sampling).

A server that stops accepting connections ends the run with one line instead
of failing every request left (what was finished is saved; the same command
continues). The served model is looked up once at the start (``/models``):
vLLM names there the base and the folder of a LoRA adapter served with
``--lora-modules``, and its context length, which the manifest records.

The API key is read from the environment variable named by ``api_key_env``
and appears nowhere else: not in the manifest, not in logs, and it is scrubbed
from error messages, as are credentials and query values in the base URL.
``--backend-option KEY=VALUE`` pairs go in the request body (``top_k=20``,
``repetition_penalty=1.05`` for vLLM).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from curator import CuratorError, MissingDependency, RegisterBackend, hookimpl
from curator.backend import Backend, BackendOptions, Completion, Request, Result, Usage
from curator_plugins.openai_transport import aiohttp_client, openai_client

RETRY_DELAY = 0.5
"""Seconds before the first retry of a malformed answer; doubled each time, at most 8."""
FATAL_STATUSES = {401: "unauthorized", 403: "forbidden", 404: "not found"}
PROBE_TIMEOUT = 10.0
"""Seconds the look-up of the served model may take; it is never retried."""
HARMLESS_QUERY = frozenset({"api-version", "api_version"})
"""Query parameters of a base URL the manifest may show; every other value is redacted."""


class MalformedResponse(Exception):
    """A 200 answer that is not a completion."""


class OpenAIBackend(Backend):
    """Chat or completions requests to an OpenAI-compatible server."""

    name = "openai"

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self._client: Any = None
        self._slots: asyncio.Semaphore | None = None
        self._secrets: list[str] = []
        self._max_n: int | None = None
        self._served: dict[str, Any] = {}
        self._gone: asyncio.Future[bool] | None = None
        self._response_type: Any = None
        self._path = "/chat/completions" if options.chat else "/completions"
        self._url = self._path

    async def open(self) -> None:
        try:
            import openai
        except ImportError as exc:
            raise MissingDependency("openai", "the openai backend", "generate") from exc
        if "adapter" in self.options.extra:
            raise CuratorError(
                "the openai backend cannot load an adapter: serve it (vLLM: --enable-lora --lora-modules "
                "NAME=DIR) and pass --model NAME"
            )
        key = os.environ.get(self.options.api_key_env, "")
        if not key and self.options.base_url is None:
            raise CuratorError(
                f"the openai backend needs an API key in ${self.options.api_key_env} "
                "(or --base-url for a server that needs none)"
            )
        self._secrets = [s for s in (key, *_url_secrets(self.options.base_url)) if len(s) >= 4]
        httpx = __import__(type(openai.DEFAULT_CONNECTION_LIMITS).__module__.partition(".")[0])
        self._response_type = httpx.Response
        try:
            http_client = aiohttp_client(httpx, self.options.concurrency, self.options.timeout)
        except ImportError:  # no aiohttp: the client's own (slower) pool
            limits = httpx.Limits(max_connections=self.options.concurrency,
                                  max_keepalive_connections=self.options.concurrency)
            http_client = openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.options.timeout)
        base_url, query = _split_query(self.options.base_url)
        self._client = openai_client(
            openai,
            api_key=key or "none",
            base_url=base_url,
            default_query=query or None,
            max_retries=self.options.retries,
            timeout=self.options.timeout,
            http_client=http_client,
        )
        # an absolute URL spares the client merging the path into its base URL at every request
        self._url = f"{str(self._client.base_url).rstrip('/')}{self._path}"
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self._served = await self._look_up_model()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def describe(self) -> dict[str, Any]:
        described = {
            **super().describe(),
            "base_url": redact_url(self.options.base_url),
            "api": "chat" if self.options.chat else "completions",
            "api_key_env": self.options.api_key_env,
            "samples_per_request": self._max_n,
        }
        if self._served.get("max_model_len") is not None:
            described["max_model_len"] = self._served["max_model_len"]
        if self._served.get("parent"):  # vLLM: a LoRA adapter served over its base
            described["adapter"] = {"name": self.options.model, "path": self._served.get("root"),
                                    "base": self._served["parent"]}
        return described

    async def complete(self, request: Request) -> Result:
        import openai

        params = request.params
        wanted = 1 if params.temperature == 0 else params.n
        completions: list[Completion] = []
        usage = Usage()
        try:
            if self._max_n is None or self._max_n >= wanted:
                completions, usage = await self._call(request, wanted, 0)
            while len(completions) < wanted:
                missing = wanted - len(completions)
                step = min(missing, self._max_n or missing)
                sizes = [step] * (missing // step) + ([missing % step] if missing % step else [])
                offsets = [len(completions) + sum(sizes[:i]) for i in range(len(sizes))]
                calls = [self._call(request, size, offset) for size, offset in zip(sizes, offsets)]
                for got, call_usage in await asyncio.gather(*calls):
                    completions.extend(got)
                    usage += call_usage
            if len(completions) > wanted:
                del completions[wanted:]
        except openai.APIStatusError as exc:
            if exc.status_code in FATAL_STATUSES:
                raise self._fatal(exc) from None
            message = self._scrub(exc.message)
            if exc.status_code == 400 and "chat template" in message:
                raise CuratorError(
                    f"the server at {self._where()} cannot answer chat requests: {message.splitlines()[0]} "
                    "(serve a model folder with a chat template, or use --completions)"
                ) from None
            return Result(request, usage=usage, error=f"HTTP {exc.status_code}: {message}")
        except openai.APIConnectionError as exc:
            if await self._server_gone():
                raise CuratorError(
                    f"the server at {self._where()} stopped accepting connections; what finished is saved: "
                    "start it again and re-run the same command to continue"
                ) from None
            return Result(request, usage=usage, error=f"{type(exc).__name__}: {self._scrub(str(exc))}")
        except MalformedResponse as exc:
            return Result(request, usage=usage, error=f"MalformedResponse: {self._scrub(str(exc))}")
        if len(completions) < params.n:  # greedy: every sample is the one asked for
            completions = completions * params.n
        return Result(request, tuple(completions), usage)

    async def _call(self, request: Request, n: int, offset: int) -> tuple[list[Completion], Usage]:
        """One HTTP request for ``n`` samples, retried while its body is malformed."""
        assert self._slots is not None
        body = self._body(request, n, offset)
        chat, stop = self.options.chat, request.params.stop
        for attempt in range(self.options.retries + 1):
            async with self._slots:
                with self.in_flight:
                    response = await self._client.post_json(self._url, body, self._response_type)
            try:
                completions, usage = _parse(response.content, chat, stop)
            except MalformedResponse:
                if attempt == self.options.retries:
                    raise
            else:
                if len(completions) < n:
                    self._max_n = min(self._max_n or n, len(completions))
                return completions, usage
            await asyncio.sleep(min(RETRY_DELAY * 2**attempt, 8.0) * (1 - 0.25 * random.random()))
        raise AssertionError("unreachable")

    def _body(self, request: Request, n: int, offset: int) -> dict[str, Any]:
        params = request.params
        body: dict[str, Any] = {
            "model": self.options.model,
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if self.options.chat:
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            if params.logprobs:
                body["logprobs"] = True
        else:
            body["prompt"] = request.prompt
            if params.logprobs:
                body["logprobs"] = 1
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed + offset
        if self.options.extra:
            body.update(self.options.extra)
        return body

    async def _look_up_model(self) -> dict[str, Any]:
        """What the server's ``/models`` says of the model: fails fast when nothing listens at all."""
        import openai

        try:
            response = await self._client.get(
                "/models", cast_to=self._response_type, options={"max_retries": 0, "timeout": PROBE_TIMEOUT}
            )
            listed = json.loads(response.content).get("data")
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise self._fatal(exc) from None
            return {}  # a server without the endpoint: nothing to record
        except openai.APIConnectionError as exc:
            if _refused(exc):
                raise CuratorError(f"no server answers at {self._where()} (connection refused)") from None
            return {}
        except (ValueError, AttributeError):
            return {}
        entries = {e.get("id"): e for e in listed if isinstance(e, dict)} if isinstance(listed, list) else {}
        entry = dict(entries.get(self.options.model, {}))
        base = entries.get(entry.get("parent"), {})
        if entry.get("max_model_len") is None and base.get("max_model_len") is not None:
            entry["max_model_len"] = base["max_model_len"]  # vLLM lists an adapter's context on its base only
        return entry

    async def _server_gone(self) -> bool:
        """Whether the server refuses connections now; one probe answers every request that failed together."""
        if self._gone is None or (self._gone.done() and not self._gone.result()):
            self._gone = asyncio.ensure_future(self._probe())
        return await asyncio.shield(self._gone)

    async def _probe(self) -> bool:
        import openai

        try:
            await self._client.get("/models", cast_to=self._response_type,
                                   options={"max_retries": 0, "timeout": PROBE_TIMEOUT})
        except openai.APIConnectionError as exc:
            return _refused(exc)
        except openai.APIError:
            pass
        return False

    def _fatal(self, exc: Any) -> CuratorError:
        return CuratorError(
            f"the server at {self._where()} answered {exc.status_code} "
            f"({FATAL_STATUSES[exc.status_code]}): {self._scrub(exc.message)}"
        )

    def _where(self) -> str:
        return redact_url(self.options.base_url) or "api.openai.com"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def redact_url(url: str | None) -> str | None:
    """A URL fit for the manifest: no ``user:password@``, no query values but harmless ones."""
    if url is None:
        return None
    parts = urlsplit(url)
    query = [(k, v if k.lower() in HARMLESS_QUERY else "***") for k, v in parse_qsl(parts.query, True)]
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query=urlencode(query, safe="*")).geturl()


def _split_query(url: str | None) -> tuple[str | None, dict[str, str]]:
    """A base URL without its query, and the query: the openai client sends it with every request."""
    if url is None:
        return None, {}
    parts = urlsplit(url)
    return parts._replace(query="").geturl(), dict(parse_qsl(parts.query, True))


def _url_secrets(url: str | None) -> list[str]:
    """The values :func:`redact_url` hides, so error messages can hide them too."""
    if url is None:
        return []
    parts = urlsplit(url)
    secrets = [v for k, v in parse_qsl(parts.query, True) if k.lower() not in HARMLESS_QUERY]
    return secrets + [parts.password] if parts.password else secrets


def _refused(exc: BaseException) -> bool:
    """Whether a connection error comes from a refused or reset connection (nothing listens)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ConnectionError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _parse(body: bytes, chat: bool, stop: tuple[str, ...]) -> tuple[list[Completion], Usage]:
    """Completions and usage from a response body; :class:`MalformedResponse` when it is not one."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise MalformedResponse(f"body is not JSON: {body[:80]!r}") from exc
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        raise MalformedResponse(f"no choices in body: {body[:80]!r}")
    if len(choices) > 1:
        choices = sorted(choices, key=lambda c: c.get("index") if isinstance(c.get("index"), int) else 0)
    completions = []
    for choice in choices:
        if chat:
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            text = "" if text is None and isinstance(message, dict) else text
        else:
            text = choice.get("text")
        if not isinstance(text, str):
            raise MalformedResponse(f"a choice has no text: {str(choice)[:80]}")
        completions.append(_completion(text, choice, chat, stop))
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    tokens = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    if len(completions) == 1 and completions[0].n_tokens is None and tokens.completion_tokens:
        completions[0] = Completion(completions[0].text, None, tokens.completion_tokens, completions[0].finish_reason)
    return completions, tokens


def _completion(text: str, choice: dict[str, Any], chat: bool, stop: tuple[str, ...]) -> Completion:
    """One choice, cut at a stop string when the server did not stop there itself."""
    tokens, logprobs = _token_logprobs(choice.get("logprobs"), chat)
    finish = choice.get("finish_reason")
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1) if stop else -1
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
        if not isinstance(content, list) or not content:
            return None, None
        tokens: Any = [t.get("token", "") if isinstance(t, dict) else "" for t in content]
        logprobs: Any = [t.get("logprob") if isinstance(t, dict) else None for t in content]
    else:
        tokens, logprobs = block.get("tokens"), block.get("token_logprobs")
        if not isinstance(tokens, list) or not isinstance(logprobs, list) or not logprobs:
            return None, None
        if len(tokens) != len(logprobs):
            return None, None
    for value in logprobs:
        if type(value) is not float and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            return None, None
    return tokens, logprobs


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register(OpenAIBackend)
