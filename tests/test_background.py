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


def test_mapped_keeps_order_across_threads_and_raises_a_failure_in_its_turn():
    import time

    from curator.background import mapped

    def slow_first(item):
        time.sleep(0.02 if item == 0 else 0.0)  # the first finishes last; it still comes first
        return item * item, threading.current_thread().name

    results = list(mapped(slow_first, range(20), workers=2))
    assert [value for value, _ in results] == [i * i for i in range(20)]
    assert {name for _, name in results} <= {f"curator-map_{i}" for i in range(2)}

    def failing(item):
        if item == 3:
            raise ValueError("bad batch 3")
        return item

    seen = []
    with pytest.raises(ValueError, match="bad batch 3"):
        seen.extend(mapped(failing, range(100), workers=2))
    assert seen == [0, 1, 2]
    assert not [t for t in threading.enumerate() if t.name.startswith("curator-map")]


def test_mapped_reads_only_a_few_items_ahead_of_the_caller():
    from curator.background import mapped

    pulled = []

    def items():
        for item in range(1000):
            pulled.append(item)
            yield item

    results = mapped(lambda item: item, items(), workers=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    assert len(pulled) <= 3 + 2 * 2 + 1  # what was handed back, what waits, the one in hand
    results.close()


def test_a_module_imported_meanwhile_is_imported_by_the_end_of_the_block(tmp_path, monkeypatch):
    import sys

    from curator.background import imported_meanwhile

    (tmp_path / "slow_to_import.py").write_text("import time\ntime.sleep(0.2)\nLOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_to_import", raising=False)
    with imported_meanwhile("slow_to_import"):
        pass  # the block does not wait for the import: the end of it does
    assert sys.modules["slow_to_import"].LOADED
    with imported_meanwhile("no_module_of_this_name"):  # not installed: nothing to do, nothing raised
        pass


@pytest.mark.parametrize(("cpus", "each"), [(1, 1), (2, 1), (3, 1), (6, 3), (64, 4)])
def test_pools_that_run_at_once_share_the_cpus(monkeypatch, cpus, each):
    import os

    from curator.background import shared_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert shared_workers(2) == each
