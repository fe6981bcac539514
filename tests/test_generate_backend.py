"""The backend API plugin authors implement: requests, bounded concurrency, batching."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from curator.backend import (
    Backend,
    BackendOptions,
    BatchedBackend,
    Completion,
    Gauge,
    Request,
    Result,
    SamplingParams,
    bounded_as_completed,
    iter_results,
    stream_results,
)
from curator.plugins import get_registry


class EchoBackend(Backend):
    """Answers each prompt with itself, after a delay given in the prompt, tracking concurrency."""

    name = "echo"

    async def complete(self, request: Request) -> Result:
        with self.in_flight:
            await asyncio.sleep(float(request.prompt.split(":")[1]))
        texts = [f"{request.prompt}#{i}" for i in range(request.params.n)]
        return Result(request, tuple(Completion(t) for t in texts))


def _requests(delays: Sequence[float]) -> list[Request]:
    return [Request.single_turn(f"p{i}:{d}", SamplingParams(), key=i) for i, d in enumerate(delays)]


def test_stream_results_keeps_a_sliding_window_and_yields_in_completion_order():
    backend = EchoBackend(BackendOptions(model="m", concurrency=4))

    async def run() -> list[Result]:
        return [r async for r in stream_results(backend, _requests([0.2, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]))]

    results = asyncio.run(run())
    keys = [r.request.key for r in results]
    assert sorted(keys) == list(range(7))
    # the slow first request does not hold the others back: no batch barrier
    assert keys[-1] == 0
    assert backend.in_flight.peak == 4


def test_bounded_as_completed_starts_lazily_and_cancels_the_rest_on_error():
    started: list[int] = []

    async def job(i: int) -> int:
        started.append(i)
        await asyncio.sleep(0.01 if i != 2 else 0)
        if i == 2:
            raise ValueError("boom")
        return i

    async def run() -> None:
        async for _ in bounded_as_completed((job(i) for i in range(100)), 3):
            pass

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(run())
    assert len(started) <= 4  # never more than the window (plus the one replacing a finished job)


def test_iter_results_runs_a_backend_from_synchronous_code():
    backend = EchoBackend(BackendOptions(model="m", concurrency=8))
    requests = [Request.single_turn(f"q{i}:0.001", SamplingParams(n=2), key=i) for i in range(20)]
    results = {r.request.key: r for r in iter_results(backend, requests)}
    assert sorted(results) == list(range(20))
    assert [c.text for c in results[3].completions] == ["q3:0.001#0", "q3:0.001#1"]


def test_iter_results_can_stop_early():
    backend = EchoBackend(BackendOptions(model="m", concurrency=2))
    results = iter_results(backend, _requests([0.001] * 50))
    first = next(results)
    results.close()
    assert first.ok
    assert not [t for t in threading.enumerate() if t.name == "curator-backend"]


class RecordingBatched(BatchedBackend):
    name = "recording"
    default_batch_size = 4

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self.batches: list[list[str]] = []

    def generate_batch(self, requests: Sequence[Request]) -> list[Result]:
        self.batches.append([r.prompt for r in requests])
        time.sleep(0.01)
        return [Result(r, tuple(Completion(r.prompt) for _ in range(r.params.n))) for r in requests]


def test_batched_backend_groups_by_sampling_settings_and_counts_samples():
    backend = RecordingBatched(BackendOptions(model="m"))
    hot = SamplingParams(n=2, temperature=0.7)
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=8)
    requests = [Request.single_turn(f"h{i}", hot) for i in range(3)]
    requests += [Request.single_turn(f"g{i}", greedy) for i in range(5)]
    requests.insert(1, Request.single_turn("h-seeded", SamplingParams(n=2, temperature=0.7, seed=5)))

    async def run() -> list[Result]:
        return list(await asyncio.gather(*(backend.complete(r) for r in requests)))

    results = asyncio.run(run())
    assert [r.request.prompt for r in results] == [r.prompt for r in requests]
    assert all(len(r.completions) == r.request.params.n for r in results)
    # 4 sequences per batch: two hot requests of n=2, never mixed with greedy ones (the seed does not matter)
    assert backend.batches == [["h0", "h-seeded"], ["h1", "h2"], ["g0", "g1", "g2", "g3"], ["g4"]]
    assert backend.in_flight.peak == 4 and backend.in_flight.level == 0


def test_gauge_time_weighted_mean():
    gauge = Gauge()
    gauge.add(2)
    time.sleep(0.05)
    gauge.add(-1)
    time.sleep(0.05)
    gauge.add(-1)
    assert gauge.peak == 2
    assert 1.3 < gauge.mean < 1.7


def test_builtin_backends_are_registered_and_import_nothing_heavy():
    import subprocess
    import sys

    registry = get_registry()
    for name in ("openai", "transformers", "vllm"):
        assert issubclass(registry.backend(name), Backend)
    code = (
        "import sys, curator_plugins.openai_backend, curator_plugins.transformers_backend, "
        "curator_plugins.vllm_backend, curator.cli.generate, curator.generate\n"
        "heavy = [m for m in ('openai', 'torch', 'transformers', 'vllm') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
