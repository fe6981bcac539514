"""One ``curator generate`` run: questions in, candidate rationales out, resumable.

Each question is a small coroutine (sample ``n`` rationales, then for
zero-shot CoT ask for each one's answer); up to ``concurrency`` questions are
under way at once and a new one starts the moment one ends, so the backend
always has work queued and no slow request holds up a batch. Finished
questions are buffered and written as a part file every ``flush_seconds``
(see :mod:`curator.generate.store`); questions whose requests still fail
after the backend's retries go to ``failures.jsonl`` and are retried by the
next run of the same command.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import warnings as _warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from curator.backend import (
    Backend,
    Completion,
    Request,
    Result,
    SamplingParams,
    Usage,
    bounded_as_completed,
)
from curator.errors import CuratorError
from curator.generate.config import GenerateConfig, GenerateResult
from curator.generate.prompts import QUESTION_STOP, Prompting, make_prompting
from curator.generate.store import CandidateStore, question_digest
from curator.outputs import output_lock, package_versions, write_json
from curator.plugins import Registry, get_registry
from curator.progress import progress_bar
from curator.questions import Question, QuestionFile
from curator.schema import TYPES
from curator.task import Task


@dataclass
class Outcome:
    question: Question
    completions: tuple[Completion, ...] = ()
    rationales: list[str] = field(default_factory=list)
    answer_texts: list[str | None] = field(default_factory=list)
    failure: dict[str, Any] | None = None


def candidate_schema(with_reference: bool, two_stage: bool) -> pa.Schema:
    """The row schema (:data:`curator.schema.TYPES`), plus ``finish_reason`` and (two-stage) ``answer_text``.

    ``finish_reason`` is the backend's: ``stop`` (the model ended or hit a
    stop string) or ``length`` (cut at ``max_tokens``, or earlier where the
    prompt left less room in the model's context).
    """
    fields = [(name, kind) for name, kind in TYPES.items() if with_reference or name != "reference"]
    fields += [("finish_reason", pa.string())]
    fields += [("answer_text", pa.string())] if two_stage else []
    return pa.schema(fields)


def derive_seed(seed: int | None, question_id: str, stage: int) -> int | None:
    """A per-request seed, so a question samples the same whatever else is in flight."""
    if seed is None:
        return None
    return int.from_bytes(hashlib.sha256(f"{seed}:{question_id}:{stage}".encode()).digest()[:4], "big") >> 1


def run_generate(config: GenerateConfig, *, registry: Registry | None = None) -> GenerateResult:
    """Run (or continue) the generation ``config`` describes."""
    if config.n > 1 and config.temperature == 0:
        raise CuratorError(
            f"--n {config.n} at --temperature 0 would be {config.n} copies of the one greedy sample "
            "(and vLLM refuses it): give a --temperature above 0, or --n 1"
        )
    registry = registry or get_registry()
    task = registry.task(config.task)
    backend = registry.backend(config.backend)(config.for_backend())
    prompting = make_prompting(config.prompt, config.exemplars, config.task)
    questions = QuestionFile(config.input, task, config=config.config, split=config.split)
    total = questions.count() if questions.columns else 0
    if not total:
        raise CuratorError(f"{config.input}: no questions")
    writes = ("candidates.parquet", "failures.jsonl", "manifest.json")
    inputs = [config.input, config.exemplars, config.model]
    with output_lock(config.output, "generate", inputs=inputs, writes=writes):
        return asyncio.run(GenerateRun(config, task, backend, prompting, questions, total).run())


class GenerateRun:
    """The state of one invocation: questions under way, rows not yet saved, counters."""

    def __init__(
        self, settings: GenerateConfig, task: Task, backend: Backend, prompting: Prompting, questions: QuestionFile,
        total: int | None = None,
    ) -> None:
        self.settings, self.task, self.backend = settings, task, backend
        self.prompting, self.questions, self.total = prompting, questions, total
        self.schema = candidate_schema(questions.has_reference, prompting.two_stage)
        self.store = CandidateStore(settings.output, settings.fingerprint())
        self.buffer: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self.failures: list[dict[str, Any]] = []
        self.order: list[str] = []
        self.references: list[str | None] = []
        self.changed: set[str] = set()
        """Ids whose question text differs from the one their stored samples answer."""
        self.truncated = self.shortened = 0
        self.usage, self.requests = Usage(), 0
        self.resumed = self.generated = self.samples = 0
        self._failures_written = self._usage_written = -1
        self._started = self._last_postfix = time.monotonic()
        self._previous_usage: dict[str, Any] = {}
        self._bar: Any = None

    async def run(self) -> GenerateResult:
        started = time.perf_counter()
        done = self.store.open()
        self._previous_usage = dict(self.store.usage)
        total = self.questions.count() if self.total is None else self.total
        # The backend opens (a model loads, a missing package is reported) before the bar is drawn.
        async with self.backend:
            with progress_bar(total, "generate", enabled=self.settings.progress, unit="q") as bar:
                self._bar = bar
                flusher = asyncio.create_task(self._flush_periodically())
                try:
                    groups = (self._group(q) for q in self._todo(done))
                    async for outcome in bounded_as_completed(groups, max(1, self.backend.options.concurrency)):
                        self._collect(outcome)
                finally:
                    flusher.cancel()
                    self._flush()
        (Path(self.settings.output) / "manifest.json").unlink(missing_ok=True)  # written last, once complete
        failed = {f["id"] for f in self.failures}
        references = self.references if self.questions.has_reference else None
        table = self.store.finalize(self.order, self.schema, drop=self.changed & failed, references=references)
        self.store.write_failures(self.failures)
        warnings = self._warnings()
        for warning in warnings:
            _warn(warning)
        manifest = self._manifest(table, time.perf_counter() - started, warnings)
        write_json(Path(self.settings.output) / "manifest.json", manifest)
        output = Path(self.settings.output)
        return GenerateResult(output, len(self.order), table.num_rows, len(self.failures), manifest)

    def _todo(self, done: dict[str, bytes]) -> Iterator[Question]:
        """The questions still to generate: new ones, failed ones, and ones edited since their samples."""
        for question in self.questions:
            self.order.append(question.id)
            self.references.append(question.reference)
            stored = done.get(question.id)
            if stored is not None:
                if stored == question_digest(question.question):
                    self.resumed += 1
                    self._bar.update(1)
                    continue
                self.changed.add(question.id)
            yield question

    async def _complete(self, request: Request) -> Result:
        result = await self.backend.complete(request)
        self.requests += 1
        self.usage += result.usage
        return result

    async def _group(self, question: Question) -> Outcome:
        settings = self.settings
        params = SamplingParams(
            n=settings.n,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_tokens=settings.max_tokens,
            stop=(QUESTION_STOP,),
            logprobs=settings.logprobs,
            seed=derive_seed(settings.seed, question.id, 1),
        )
        first = self.prompting.first(question.question, params)
        result = await self._complete(first)
        if result.ok and len(result.completions) != settings.n:
            result = Result(first, error=f"the backend returned {len(result.completions)} of {settings.n} samples")
        if not result.ok:
            return Outcome(question, failure={"id": question.id, "stage": 1, "error": result.error})
        rationales = [self.prompting.rationale(c.text) for c in result.completions]
        outcome = Outcome(question, result.completions, rationales, [None] * len(rationales))
        if not self.prompting.two_stage:
            return outcome
        answer_params = SamplingParams(max_tokens=settings.answer_max_tokens, stop=(QUESTION_STOP,))
        unique = list(dict.fromkeys(rationales))  # identical rationales get the same greedy answer
        requests = [self.prompting.second(first, rationale, answer_params) for rationale in unique]
        answers = await asyncio.gather(*(self._complete(r) for r in requests if r is not None))
        assert len(answers) == len(unique), "a two-stage prompting must build every second request"
        for rationale, answer in zip(unique, answers):
            if not answer.ok or not answer.completions:
                sample = rationales.index(rationale)
                error = answer.error or "no completion"
                return Outcome(question, failure={"id": question.id, "stage": 2, "sample": sample, "error": error})
        by_rationale = {r: a.completions[0].text for r, a in zip(unique, answers)}
        outcome.answer_texts = [by_rationale[r] for r in rationales]
        return outcome

    def _collect(self, outcome: Outcome) -> None:
        question = outcome.question
        if outcome.failure is not None:
            self.failures.append(outcome.failure)
        else:
            self.generated += 1
            for sample, (completion, rationale, answer_text) in enumerate(
                zip(outcome.completions, outcome.rationales, outcome.answer_texts)
            ):
                row = {
                    "id": question.id,
                    "question": question.question,
                    "rationale": rationale,
                    "answer": self.prompting.answer_source(rationale, answer_text),
                    "reference": question.reference,
                    "sample": sample,
                    "model": self.settings.model,
                    "logprob": completion.logprob,
                    "n_tokens": completion.n_tokens,
                    "finish_reason": completion.finish_reason,
                    "answer_text": answer_text,
                }
                if completion.finish_reason == "length":
                    self.truncated += 1
                    if completion.n_tokens is not None and completion.n_tokens < self.settings.max_tokens:
                        self.shortened += 1
                for name, values in self.buffer.items():
                    values.append(row[name])
                self.samples += 1
        self._bar.update(1)
        now = time.monotonic()
        if now - self._last_postfix >= 0.5:
            self._last_postfix = now
            self._bar.set_postfix(
                samples=self.samples,
                tok_s=f"{self.usage.completion_tokens / max(now - self._started, 1e-9):.0f}",
                failed=len(self.failures),
                in_flight=self.backend.in_flight.level,
            )

    async def _flush_periodically(self) -> None:
        """Save progress every ``flush_seconds``, even while no question finishes."""
        while True:
            await asyncio.sleep(max(self.settings.flush_seconds, 0.01))
            self._flush()

    def _flush(self) -> None:
        """Persist finished groups, failures and usage, when there is anything new."""
        if self.buffer["id"]:
            columns = {name: pa.array(values, self.schema.field(name).type) for name, values in self.buffer.items()}
            columns["answer"] = self.task.extract_batch(columns["answer"])
            self.store.write_part(pa.table(columns, schema=self.schema))
            for values in self.buffer.values():
                values.clear()
        if self._failures_written != len(self.failures):
            self.store.write_failures(self.failures)
            self._failures_written = len(self.failures)
        if self._usage_written != self.requests:
            self.store.save_usage(self._usage(self._previous_usage, total=True))
            self._usage_written = self.requests

    def _usage(self, previous: dict[str, Any], *, total: bool) -> dict[str, Any]:
        usage: dict[str, float] = {
            "requests": self.requests,
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
        }
        if total:
            usage = {k: v + int(previous.get(k, 0)) for k, v in usage.items()}
        if self.settings.price_input is not None or self.settings.price_output is not None:
            usage["cost_usd"] = round(
                usage["prompt_tokens"] * (self.settings.price_input or 0.0) / 1e6
                + usage["completion_tokens"] * (self.settings.price_output or 0.0) / 1e6,
                6,
            )
        return usage

    def _warnings(self) -> list[str]:
        """What the user should know although the run succeeded (kept in the manifest too)."""
        warnings = []
        if self.shortened:
            warnings.append(
                f"{self.shortened} samples stopped before --max-tokens {self.settings.max_tokens}: the prompt left "
                "less room than that in the model's context (finish_reason 'length' in candidates.parquet); "
                "use a model with a longer context, fewer exemplars or a smaller --max-tokens"
            )
        if self.truncated > self.shortened:
            warnings.append(
                f"{self.truncated - self.shortened} samples were cut at --max-tokens {self.settings.max_tokens} "
                "(finish_reason 'length')"
            )
        return warnings

    def _manifest(self, table: pa.Table, wall: float, warnings: list[str]) -> dict[str, Any]:
        options = self.backend.options
        return {
            "command": "generate",
            "settings": self.settings.to_dict(),
            "backend": {
                "concurrency": options.concurrency,
                "retries": options.retries,
                "timeout": options.timeout,
                "batch_size": options.batch_size,
                "device": options.device,
                "dtype": options.dtype,
                "options": sorted(options.extra),
                **self.backend.describe(),
            },
            "counts": {
                "questions": len(self.order),
                "done_before": self.resumed,
                "changed": len(self.changed),
                "generated": self.generated,
                "failed": len(self.failures),
                "rows": table.num_rows,
                "answers_parsed": table.num_rows - table["answer"].null_count,
                "with_reference": "reference" in table.column_names,
                "truncated": self.truncated,
                "shortened_by_context": self.shortened,
            },
            "warnings": warnings,
            "usage": self._usage({}, total=False),
            "usage_all_runs": self._usage(self._previous_usage, total=True),
            "wall_seconds": round(wall, 3),
            "requests_per_second": round(self.requests / wall, 2) if wall > 0 else None,
            "in_flight": {"mean": round(self.backend.in_flight.mean, 2), "peak": self.backend.in_flight.peak},
            "outputs": {"candidates": "candidates.parquet", "failures": "failures.jsonl"},
            "versions": package_versions("openai", "torch", "transformers", "vllm"),
        }


def _warn(message: str) -> None:
    _warnings.warn_explicit(message, UserWarning, "curator generate", 0)
