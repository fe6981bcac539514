"""The local executor: one process streams the working copy and scores the rows the cache lacks.

Models stay loaded for the whole build in one pool, so steps naming the
same model share one copy; memory is one batch of rows plus the models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from curator.build.scoring import ModelPool, ScoredRows, ScoringJob, rows_to_score, score_rows


class LocalExecutor:
    name = "local"

    def __init__(self) -> None:
        self.models = ModelPool()

    def score(self, job: ScoringJob, advance: Callable[[int], None]) -> Iterator[ScoredRows]:
        context = job.work.context(self.models)
        for index, first_row, batch in job.prepared.batches(job.plan.todo_batches):
            rows = rows_to_score(batch, first_row, job.plan.todo_rows(index))
            yield score_rows(job.work, index, rows, context, advance)

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
