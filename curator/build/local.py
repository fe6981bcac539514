"""The local executor: one process streams the working copy and scores the rows the cache lacks.

Models stay loaded for the whole build in one pool, so steps naming the
same model share one copy; memory is one batch of rows plus the models.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from curator.background import mapped
from curator.build.scoring import ModelPool, ScoredRows, ScoringJob, rows_to_score, score_rows


class LocalExecutor:
    name = "local"

    def __init__(self) -> None:
        self.models = ModelPool()

    def score(self, job: ScoringJob, advance: Callable[[int], None]) -> Iterator[ScoredRows]:
        """A model's batches one at a time (the model has the cores, or the GPU); other filters' two at once.

        A filter that runs no model is Arrow and numpy kernels over a batch,
        which release the GIL: on two cores two batches then score at once.
        """
        context = job.work.context(self.models)
        # The plan is read here, in order; only the scoring goes to other threads.
        work = ((item, job.plan.todo_rows(item[0])) for item in job.prepared.batches(job.plan.todo_batches))

        lock = threading.Lock()

        def progress(count: int) -> None:  # rows finished in either thread move the one bar
            with lock:
                advance(count)

        def scored(item: tuple[tuple[int, int, pa.RecordBatch], pa.RecordBatch]) -> ScoredRows:
            (index, first_row, batch), todo = item
            return score_rows(job.work, index, rows_to_score(batch, first_row, todo, job.work.filter), context, progress)

        yield from (map if job.work.filter.uses_model else mapped)(scored, work)

    def describe(self) -> dict[str, Any]:
        """The executor, and the CPU threads torch was given when this build loaded a model on the CPU.

        The choice is per process; a build that loaded no model (though an
        earlier one in this process did) records none.
        """
        from curator.lm.threads import chosen_threads

        threads = chosen_threads() if len(self.models) else None
        return {"name": self.name, **({"torch_threads": threads} if threads else {})}

    def close(self) -> None:
        self.models.clear()
