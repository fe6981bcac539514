"""Background threads: order kept, failures raised in the caller, a stopped caller stops the producer."""

from __future__ import annotations

import threading

import pytest

from curator.background import Worker, handed_over, prefetched


def test_prefetched_keeps_order_and_raises_the_producers_failure_in_the_caller():
    assert list(prefetched(range(50), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad row 2")

    seen = []
    with pytest.raises(ValueError, match="bad row 2"):
        seen.extend(prefetched(failing()))
    assert seen == [1]


def test_a_caller_that_stops_early_stops_the_producer_and_its_thread():
    answers = []

    def produce(put):
        for item in range(1000):
            answers.append(put(item))
            if not answers[-1]:
                return

    items = handed_over(produce, depth=1, name="curator-test")
    assert [next(items), next(items)] == [0, 1]
    items.close()
    assert answers[-1] is False and len(answers) < 10
    assert not [t for t in threading.enumerate() if t.name == "curator-test"]


def test_a_worker_runs_calls_in_order_and_raises_a_failure_once():
    done = []

    def fail():
        raise OSError("disk full")

    worker = Worker("test")
    worker.submit(done.append, 1)
    worker.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        worker.close()
    worker.close()  # raised once
    assert done == [1]
    with Worker("test") as worker:
        for item in range(5):
            worker.submit(done.append, item)
    assert done == [1, 0, 1, 2, 3, 4]
