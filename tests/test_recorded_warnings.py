"""Warnings recorded per thread: two batches scoring at once keep their own, and nothing leaks out."""

from __future__ import annotations

import threading
import warnings

from curator.build.recorded_warnings import recorded_warnings


def test_each_thread_records_its_own_warnings_and_the_process_state_comes_back():
    before_filters, before_show = warnings.filters[:], warnings.showwarning
    barrier = threading.Barrier(2)
    caught: dict[str, list[str]] = {}

    def score(name: str) -> None:
        with recorded_warnings() as mine:
            barrier.wait()  # both threads record at once
            for row in range(3):
                warnings.warn(f"{name} row {row}", UserWarning, stacklevel=1)  # same place: shown every time
                barrier.wait()
        caught[name] = [str(w.message) for w in mine]

    threads = [threading.Thread(target=score, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert caught == {name: [f"{name} row {row}" for row in range(3)] for name in ("a", "b")}
    assert warnings.filters == before_filters and warnings.showwarning is before_show


def test_a_thread_that_is_not_recording_warns_as_usual_meanwhile():
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        inside_started, outside_done = threading.Event(), threading.Event()
        recorded: list[str] = []

        def score() -> None:
            with recorded_warnings() as mine:
                inside_started.set()
                outside_done.wait(5)
                warnings.warn("inside", UserWarning, stacklevel=1)
            recorded.extend(str(w.message) for w in mine)

        thread = threading.Thread(target=score)
        thread.start()
        inside_started.wait(5)
        warnings.warn("outside", UserWarning, stacklevel=1)
        outside_done.set()
        thread.join()
    assert recorded == ["inside"]
    assert [str(w.message) for w in outside] == ["outside"]
