"""How the openai backend's requests reach the server: the openai client in charge, at a fraction of its CPU.

At a few hundred requests a second the client's own request path costs more
CPU than anything else in ``curator generate``. Two pieces cut it while the
client keeps what it is for (retries with backoff and ``Retry-After``, its
error types, its auth and headers):

- :func:`aiohttp_client` carries each request over one aiohttp session
  instead of the client's httpx pool;
- :func:`openai_client` builds each completion request as a copy of the
  first one of its kind, with its own body, instead of from scratch.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

CARRIED = "curator.aiohttp"
"""The request extension holding what the aiohttp carrier sends: its URL, headers and body."""
VARYING = frozenset({"json_data", "idempotency_key"})
"""Request options that differ between completion requests: the body, and the key the client draws per request."""


def openai_client(openai: Any, **settings: Any) -> Any:
    """An ``openai.AsyncOpenAI`` that builds a completion post as a copy of the first one it built.

    The client builds every request from scratch: it validates a new options
    object, merges its default, auth and retry headers into httpx's
    ``Headers``, parses the URL and checks query, files and timeouts (more
    than half of its CPU per post; see ``bench/RESULTS.md``), though every
    completion request of a run differs from the first only in its body. So
    :meth:`post_json` copies one options object per URL, and the first post
    of each shape (the same options but the body, and the same retry count,
    whose header differs) is built by the client itself and kept: later ones
    are copies of it with their own body. A copy is used only where the
    client's own build showed it would be the same request: taken by the
    carrier of :func:`aiohttp_client`, its body the bytes :func:`_json`
    makes, and a second build with another idempotency key giving the same
    method, URL, headers and timeouts (a client whose headers change per
    request builds each one itself, as does one given other options per
    call). The rest, the retry loop above all, is the client's own. The
    client's settings (key, headers, base URL) are not changed after it is
    made.
    """
    from openai._models import FinalRequestOptions

    unset = (openai.NotGiven, openai.Omit)

    # named as its base: the client sends its class name as its User-Agent
    class AsyncOpenAI(openai.AsyncOpenAI):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._posts: dict[str, Any] = {}
            """Per URL, the options of a JSON post to it, but the body."""
            self._built: dict[int, tuple[list[tuple[str, Any]], Any]] = {}
            """Retries taken to the shape of the first post and the request the client built for it."""
            self._own = False
            """Whether the client's requests proved not to be copies of each other: it builds every one."""

        async def post_json(self, url: str, body: dict[str, Any], cast_to: Any) -> Any:
            """``post(url, body=body, cast_to=cast_to)``, without making and validating the same options again."""
            options = self._posts.get(url)
            if options is None:
                options = self._posts[url] = FinalRequestOptions.construct(method="post", url=url)
            options = copy.copy(options)
            options.json_data = body
            return await self.request(cast_to, options)

        def _build_request(self, options: Any, *, retries_taken: int = 0) -> Any:
            if self._own or options.method != "post" or type(options.json_data) is not dict:
                return super()._build_request(options, retries_taken=retries_taken)
            shape = _shape(options, unset)
            built = self._built.get(retries_taken)
            if built is None:
                request = super()._build_request(options, retries_taken=retries_taken)
                if self._copyable(options, retries_taken, request):
                    self._built[retries_taken] = (shape, request)
                else:
                    self._own = True
                return request
            if built[0] == shape:
                try:
                    return self._client.with_body(built[1], _json(options.json_data))
                except (TypeError, ValueError):  # a value plain JSON has not: the client's encoder decides
                    pass
            return super()._build_request(options, retries_taken=retries_taken)

        def _copyable(self, options: Any, retries_taken: int, request: Any) -> bool:
            carried = request.extensions.get(CARRIED)
            try:
                if carried is None or carried[2] != _json(options.json_data):
                    return False
            except (TypeError, ValueError):
                return False
            other = copy.copy(options)
            other.idempotency_key = f"{options.idempotency_key}-curator-check"
            again = super()._build_request(other, retries_taken=retries_taken)
            return _sent(again) == _sent(request)

    return AsyncOpenAI(**settings)


def _shape(options: Any, unset: tuple[type, ...]) -> list[tuple[str, Any]]:
    """A request's options but those that differ between completion requests (each "not given" is a new object)."""
    return [(name, type(value) if isinstance(value, unset) else value)
            for name, value in vars(options).items() if name not in VARYING]


def _sent(request: Any) -> tuple[Any, ...]:
    """What goes on the wire of ``request``, but its body."""
    carried = request.extensions.get(CARRIED)
    return (request.method, str(request.url), request.headers.raw, request.extensions.get("timeout"),
            None if carried is None else (str(carried[0]), carried[1]))


def _json(body: dict[str, Any]) -> bytes:
    """A body as the openai client serialises it (its ``openapi_dumps``, for plain JSON values)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def aiohttp_client(httpx: Any, connections: int, timeout: float) -> Any:
    """An httpx client for the openai client that sends its plain requests with aiohttp.

    The openai client builds each request, retries it and turns its answer
    into errors as always; this client only carries it. A request is sent as
    the openai client built it (its headers, its bytes) through one aiohttp
    session, its answer read whole, and aiohttp's errors become the httpx ones
    the openai client retries. Anything else (streams, auth flows, files)
    goes through httpx unchanged, as do URLs with credentials. Cookies are not kept: API servers do not
    set them. This costs about half the client CPU of the openai client's
    own aiohttp transport, which re-parses URLs and headers at each layer.
    """
    import aiohttp
    import yarl

    default = httpx._client.USE_CLIENT_DEFAULT

    class AiohttpClient(httpx.AsyncClient):
        def __init__(self) -> None:
            super().__init__(timeout=timeout, follow_redirects=True)
            self._session: aiohttp.ClientSession | None = None
            self._urls: dict[str, tuple[Any, yarl.URL]] = {}

        def build_request(self, method: str, url: Any, *, content: Any = None, headers: Any = None,
                          timeout: Any = default, extensions: Any = None, **other: Any) -> Any:
            plain = (isinstance(url, str) and isinstance(headers, list) and not extensions and "@" not in url
                     and isinstance(content, (bytes, type(None))))
            if not plain or any(value is not None for value in other.values()):
                return super().build_request(method, url, content=content, headers=headers, timeout=timeout,
                                             extensions=extensions, **other)
            urls = self._urls.get(url)
            if urls is None:
                urls = self._urls[url] = (httpx.URL(url), yarl.URL(url))
            limits = self.timeout if timeout is default else httpx.Timeout(timeout)
            carried = {"timeout": limits.as_dict(), CARRIED: (urls[1], headers, content)}
            # a ready stream: httpx neither re-encodes the body nor re-builds the headers (aiohttp adds Host
            # and Content-Length itself)
            return httpx.Request(method, urls[0], headers=headers, stream=httpx.ByteStream(content or b""),
                                 extensions=carried)

        def with_body(self, request: Any, content: bytes) -> Any:
            """``request``, one this client built, with another body."""
            url, headers, _ = request.extensions[CARRIED]
            extensions = {"timeout": request.extensions["timeout"], CARRIED: (url, headers, content)}
            return httpx.Request(request.method, request.url, headers=request.headers,
                                 stream=httpx.ByteStream(content), extensions=extensions)

        async def send(self, request: Any, *, stream: bool = False, auth: Any = default,
                       follow_redirects: Any = default) -> Any:
            carried = request.extensions.get(CARRIED)
            if carried is None or stream or auth is not default:
                return await super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)
            if self._session is None:
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=connections), auto_decompress=False,
                    headers={"Accept-Encoding": "gzip, deflate"},
                )
            url, headers, content = carried
            limits = request.extensions["timeout"]
            try:
                async with self._session.request(
                    request.method, url, data=content, headers=headers,
                    timeout=aiohttp.ClientTimeout(sock_connect=limits.get("connect"), sock_read=limits.get("read")),
                ) as answer:
                    body = await answer.read()
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
            except aiohttp.ClientConnectorError as exc:
                raise httpx.ConnectError(str(exc), request=request) from exc
            except aiohttp.ClientError as exc:
                raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
            return httpx.Response(answer.status, headers=answer.raw_headers, content=body, request=request)

        async def aclose(self) -> None:
            if self._session is not None:
                await self._session.close()
                self._session = None
            await super().aclose()

    return AiohttpClient()
