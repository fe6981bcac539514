"""Generation backends: the interface a plugin implements to produce completions.

A backend turns a :class:`Request` (one prompt, in completion form and in chat
form, plus sampling parameters) into a :class:`Result` holding ``n``
completions. The one method to write is the coroutine :meth:`Backend.complete`;
callers run many of them at once and the backend bounds how many reach its
server, so a remote backend keeps a sliding window of requests in flight with
no per-batch barrier. Engines that work on whole batches (transformers, vLLM)
subclass :class:`BatchedBackend` and write a synchronous ``generate_batch``;
requests that arrive together are batched for them.

A request that still fails after the backend's retries comes back as a Result
with ``error`` set rather than as an exception, so one bad prompt never stops
a run; exceptions are for misconfiguration that would fail every request.

Callers with a plain list of requests use :func:`stream_results` (async) or
:func:`iter_results` (sync); both yield results as they arrive.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, NamedTuple, TypeVar

from curator.background import handed_over

T = TypeVar("T")


class Message(NamedTuple):
    """One chat turn."""

    role: str
    content: str


@dataclass(frozen=True)
class SamplingParams:
    """How to sample; ``temperature == 0`` means greedy."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    seed: int | None = None


@dataclass(frozen=True)
class Request:
    """One prompt, in both forms, so the backend (not the caller) picks chat or completion."""

    prompt: str
    messages: tuple[Message, ...]
    params: SamplingParams = SamplingParams()
    key: Hashable = None
    """The caller's handle for matching results to requests; backends ignore it."""

    @classmethod
    def single_turn(cls, prompt: str, params: SamplingParams, key: Hashable = None) -> Request:
        """A request whose chat form is the prompt as one user message."""
        return cls(prompt, (Message("user", prompt),), params, key)


@dataclass(frozen=True)
class Completion:
    """One sampled continuation; ``logprob`` sums its tokens' log-probabilities when known."""

    text: str
    logprob: float | None = None
    n_tokens: int | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class Result:
    """The outcome of one request: ``n`` completions, or an error after retries."""

    request: Request
    completions: tuple[Completion, ...] = ()
    usage: Usage = Usage()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class BackendOptions:
    """Settings common to backends; each reads the ones that apply to it.

    ``extra`` holds ``--backend-option KEY=VALUE`` pairs for what is specific
    to one backend (the openai backend sends them in the request body).
    """

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    chat: bool = False
    concurrency: int = 256
    retries: int = 6
    timeout: float = 600.0
    seed: int | None = None
    batch_size: int | None = None
    device: str | None = None
    dtype: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Gauge:
    """A level over time (requests in flight): current, peak and time-weighted mean."""

    def __init__(self) -> None:
        self.level = 0
        self.peak = 0
        self._area = 0.0
        self._start: float | None = None
        self._last = 0.0

    def add(self, delta: int) -> None:
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        else:
            self._area += self.level * (now - self._last)
        self._last = now
        self.level += delta
        self.peak = max(self.peak, self.level)

    def __enter__(self) -> Gauge:
        self.add(1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.add(-1)

    @property
    def mean(self) -> float:
        span = 0.0 if self._start is None else self._last - self._start
        return self._area / span if span > 0 else float(self.level)


class Backend(ABC):
    """A generation backend, registered through ``register_backends``.

    Built from :class:`BackendOptions`; opened with ``async with backend:``
    inside the event loop that will call :meth:`complete` (clients bind to
    their loop). ``in_flight`` counts requests at the server, for the manifest.
    """

    name: ClassVar[str] = ""

    def __init__(self, options: BackendOptions) -> None:
        self.options = options
        self.in_flight = Gauge()

    async def open(self) -> None:
        """Create clients or load the model; raise :class:`curator.CuratorError` when that cannot work."""

    async def close(self) -> None:
        """Release what :meth:`open` acquired."""

    async def __aenter__(self) -> Backend:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abstractmethod
    async def complete(self, request: Request) -> Result:
        """``request.params.n`` completions of ``request``, retried as the backend sees fit.

        Safe to call concurrently; the backend keeps at most
        ``options.concurrency`` calls at its server.
        """

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this backend; never a secret.

        An ``adapter`` option (a LoRA folder applied to ``model``) is named
        here, since the rows' ``model`` column names the base only.
        """
        described: dict[str, Any] = {"backend": self.name, "model": self.options.model}
        if self.options.extra.get("adapter") is not None:
            described["adapter"] = {"path": str(self.options.extra["adapter"])}
        return described


class BatchedBackend(Backend):
    """A backend whose engine generates a batch at a time.

    :meth:`complete` queues the request; one worker takes the oldest pending
    request and every other pending one with the same sampling settings, up
    to ``batch_size`` sequences (``n`` each), and runs :meth:`generate_batch`
    in a thread so the event loop keeps accepting requests meanwhile.
    """

    default_batch_size: ClassVar[int] = 16

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self._pending: list[tuple[Request, asyncio.Future[Result]]] = []
        self._worker: asyncio.Task[None] | None = None

    @abstractmethod
    def generate_batch(self, requests: Sequence[Request]) -> list[Result]:
        """One result per request, in order; the requests share a :meth:`batch_key`."""

    def batch_key(self, params: SamplingParams) -> Hashable:
        """Requests batch together when their keys are equal: by default, all settings but n and seed."""
        return replace(params, seed=None, n=1)

    @property
    def batch_size(self) -> int:
        return self.options.batch_size or self.default_batch_size

    async def complete(self, request: Request) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let requests submitted in the same tick join the first batch
        while self._pending:
            batch = self._take_batch()
            sequences = sum(request.params.n for request, _ in batch)
            self.in_flight.add(sequences)
            try:
                results = await asyncio.to_thread(self.generate_batch, [request for request, _ in batch])
            except Exception as exc:  # the engine failed: every caller of this batch sees why
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self.in_flight.add(-sequences)
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    def _take_batch(self) -> list[tuple[Request, asyncio.Future[Result]]]:
        key = self.batch_key(self._pending[0][0].params)
        batch: list[tuple[Request, asyncio.Future[Result]]] = []
        rest: list[tuple[Request, asyncio.Future[Result]]] = []
        sequences = 0
        for item in self._pending:
            n = item[0].params.n
            fits = not batch or sequences + n <= self.batch_size
            if fits and self.batch_key(item[0].params) == key:
                batch.append(item)
                sequences += n
            else:
                rest.append(item)
        self._pending = rest
        return batch


async def bounded_as_completed(awaitables: Iterable[Awaitable[T]], window: int) -> AsyncIterator[T]:
    """Outcomes of ``awaitables`` as they finish, starting the next as soon as one ends.

    At most ``window`` run at once and the iterable is consumed lazily, so a
    million prompts never become a million tasks. An exception in one is
    raised here after the others are cancelled.
    """
    finished: asyncio.Queue[asyncio.Future[T]] = asyncio.Queue()
    source = iter(awaitables)
    running: set[asyncio.Future[T]] = set()
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < window:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                future = asyncio.ensure_future(item)
                future.add_done_callback(finished.put_nowait)
                running.add(future)
            if not running:
                return
            done = await finished.get()
            running.discard(done)
            yield done.result()
    finally:
        for task in running:
            task.cancel()


async def stream_results(
    backend: Backend, requests: Iterable[Request], *, window: int | None = None
) -> AsyncIterator[Result]:
    """Results of ``requests`` on an opened backend, in completion order (match them by ``key``)."""
    async for result in bounded_as_completed(
        (backend.complete(request) for request in requests), window or backend.options.concurrency
    ):
        yield result


def iter_results(
    backend: Backend, requests: Iterable[Request], *, window: int | None = None
) -> Iterator[Result]:
    """:func:`stream_results` for synchronous code: opens the backend, runs its event loop in a thread."""

    def run(put: Callable[[Result], bool]) -> None:
        async def produce() -> None:
            async with backend:
                async for result in stream_results(backend, requests, window=window):
                    if not await asyncio.to_thread(put, result):
                        return

        asyncio.run(produce())

    return handed_over(run, depth=1024, name="curator-backend")
