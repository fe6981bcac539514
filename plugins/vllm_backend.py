"""The ``vllm`` backend: vLLM's offline engine (``vllm.LLM``) in this process.

Registered always, so ``curator plugins`` lists it; vllm is imported only
when a run opens the backend, and a machine without it gets a one-line
error naming the package instead of an ImportError. vLLM schedules its own
continuous batching, so each call hands it every pending request (up to
``batch_size`` sequences, default 4096), each with its own seed, which makes
sampled outputs independent of what else was in the batch.

``--backend-option KEY=VALUE`` pairs go to ``vllm.LLM`` (for example
``tensor_parallel_size=2``, ``gpu_memory_utilization=0.85``,
``max_model_len=4096``); ``adapter=DIR`` applies a PEFT LoRA adapter (from
``curator train``) to every request, and the manifest records it.

What vLLM does not do for us:

- On CPU, a seeded request whose prompt is split across steps (chunked
  prefill) kills the engine (``CPU Generator does not use offset``), so there
  chunked prefill is off unless the options say otherwise.
- A dead engine, a model folder it cannot load or one without the chat
  template ``--chat`` needs become one line, not a traceback (vLLM's engine
  process may still print its own as it dies: it shares this stderr).
- vLLM refuses ``n > 1`` with greedy sampling: at temperature 0 one sample
  is generated and repeated.

Loading an engine takes minutes, so the last one is kept for the next
backend with the same model and engine options in this process (``eval``
after ``generate`` in a notebook, a ``compare`` that evaluates every recipe);
an engine with LoRA enabled serves base requests too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from curator import CuratorError, MissingDependency, RegisterBackend, hookimpl
from curator.backend import BackendOptions, BatchedBackend, Completion, Request, Result, SamplingParams, Usage

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ``max_lora_rank`` values vLLM accepts."""

_kept: dict[str, Any] = {}
"""The engine kept for reuse: ``key`` (model and options), ``rank`` (its LoRA rank, 0 without) and ``llm``.
At most one: engines are large."""
_lora_ids: dict[str, int] = {}
"""A stable vLLM id per adapter folder, so one engine can hold several."""


class VLLMBackend(BatchedBackend):
    """Batched generation with ``vllm.LLM``."""

    name = "vllm"
    default_batch_size = 4096

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self._llm: Any = None
        self._lora: Any = None
        self._adapter: dict[str, Any] | None = None
        self._max_model_len: int | None = None

    async def open(self) -> None:
        folder = Path(self.options.model)
        if self.options.chat and folder.is_dir() and not _has_chat_template(folder):
            raise _no_chat_template(self.options.model)  # before minutes of loading, not after
        try:
            import vllm
        except ImportError as exc:
            raise MissingDependency("vllm", "the vllm backend") from exc
        engine = {k: v for k, v in self.options.extra.items() if k != "adapter"}
        adapter = self.options.extra.get("adapter")
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self._adapter = _read_adapter(Path(str(adapter)))
            engine.setdefault("enable_lora", True)
            engine.setdefault("max_lora_rank", min(r for r in LORA_RANKS if r >= self._adapter["r"]))
            path = self._adapter["path"]
            self._lora = LoRARequest(Path(path).name, _lora_ids.setdefault(path, len(_lora_ids) + 1), path)
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            engine.setdefault("enable_chunked_prefill", False)
        settings = {"model": self.options.model, "dtype": self.options.dtype or "auto",
                    "seed": self.options.seed or 0, **engine}
        self._llm = await asyncio.to_thread(_engine, vllm, settings)
        self._max_model_len = self._llm.llm_engine.model_config.max_model_len
        if self.options.chat and not getattr(self._llm.get_tokenizer(), "chat_template", None):
            raise _no_chat_template(self.options.model)

    async def close(self) -> None:
        self._llm = None  # the engine stays kept for the next backend that can use it

    def batch_key(self, params: SamplingParams) -> None:
        """Everything batches together: vLLM takes sampling settings per request."""
        return None

    def describe(self) -> dict[str, Any]:
        described = {**super().describe(), "batch_size": self.batch_size, "chat": self.options.chat,
                     "engine_options": sorted(self.options.extra)}
        if self._max_model_len is not None:
            described["max_model_len"] = self._max_model_len
        if self._adapter is not None:
            described["adapter"] = {"path": self._adapter["path"], "base": self._adapter["base"]}
        return described

    def generate_batch(self, requests: Sequence[Request]) -> list[Result]:
        import vllm

        sampling = [
            vllm.SamplingParams(
                n=1 if r.params.temperature == 0 else r.params.n,
                temperature=r.params.temperature,
                top_p=r.params.top_p,
                max_tokens=r.params.max_tokens,
                stop=list(r.params.stop) or None,
                logprobs=0 if r.params.logprobs else None,
                seed=r.params.seed,
            )
            for r in requests
        ]
        try:
            outputs = self._run(requests, sampling)
        except Exception as exc:
            if not _refused(exc):
                raise self._engine_error(exc) from None
            # vLLM refuses one request (a prompt longer than the context) by failing its whole batch
            if len(requests) == 1:
                return [Result(requests[0], error=f"{type(exc).__name__}: {_first_line(exc)}")]
            return [result for i in range(len(requests)) for result in self.generate_batch(requests[i:i + 1])]
        results = []
        for request, output in zip(requests, outputs):
            completions = tuple(
                Completion(o.text, o.cumulative_logprob if request.params.logprobs else None, len(o.token_ids),
                           o.finish_reason)
                for o in output.outputs
            )
            if len(completions) < request.params.n:  # greedy: every sample is the one generated
                completions = completions * request.params.n
            usage = Usage(len(output.prompt_token_ids or ()), sum(len(o.token_ids) for o in output.outputs))
            results.append(Result(request, completions, usage))
        return results

    def _run(self, requests: Sequence[Request], sampling: list[Any]) -> list[Any]:
        if self.options.chat:
            conversations = [[{"role": m.role, "content": m.content} for m in r.messages] for r in requests]
            return self._llm.chat(conversations, sampling, use_tqdm=False, lora_request=self._lora)
        return self._llm.generate([r.prompt for r in requests], sampling, use_tqdm=False, lora_request=self._lora)

    def _engine_error(self, exc: Exception) -> CuratorError:
        """One line for what stopped the engine; a dead engine is not kept."""
        if type(exc).__name__ == "ChatTemplateResolutionError":
            return _no_chat_template(self.options.model)
        if type(exc).__name__ == "EngineDeadError":
            release_engine()
            cause = exc.__cause__ or exc.__context__
            detail = f" ({_first_line(cause)})" if cause is not None else ""
            return CuratorError(
                f"vLLM's engine for {self.options.model} stopped{detail}; what finished is saved: "
                "re-run the same command to continue (on CPU keep enable_chunked_prefill off for seeded runs)"
            )
        return CuratorError(f"vLLM failed on {self.options.model}: {type(exc).__name__}: {_first_line(exc)}")


def _engine(vllm: Any, settings: dict[str, Any]) -> Any:
    """The kept engine when it fits these settings, else a new one (which replaces it)."""
    lora = ("enable_lora", "max_lora_rank")
    key = json.dumps({k: v for k, v in settings.items() if k not in lora}, sort_keys=True, default=str)
    rank = int(settings.get("max_lora_rank", 16)) if settings.get("enable_lora") else 0
    if _kept.get("key") == key and _kept["rank"] >= rank:
        return _kept["llm"]
    release_engine()  # one engine at a time: the old one's memory is freed before the new one loads
    try:
        llm = vllm.LLM(**settings)
    except Exception as exc:  # vLLM reports a bad folder or option in many exception types
        raise CuratorError(
            f"vLLM could not start on {settings['model']}: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    _kept.update(key=key, rank=rank, llm=llm)
    return llm


def release_engine() -> None:
    """Stop the kept engine, if any, and free its memory now rather than at exit."""
    llm = _kept.pop("llm", None)
    _kept.clear()
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None:
        with contextlib.suppress(Exception):  # already dead: nothing left to stop
            core.shutdown()


def _read_adapter(folder: Path) -> dict[str, Any]:
    """The adapter's rank and base, refusing what vLLM would load as a pickle or not at all."""
    config = folder / "adapter_config.json"
    if not config.is_file():
        raise CuratorError(f"{folder}: not a PEFT adapter folder (no adapter_config.json)")
    if not (folder / "adapter_model.safetensors").is_file():
        raise CuratorError(
            f"{folder}: no adapter_model.safetensors (pickled weights are refused; "
            "re-save the adapter with save_pretrained(..., safe_serialization=True))"
        )
    try:
        settings = json.loads(config.read_text())
    except ValueError as exc:
        raise CuratorError(f"{config}: not JSON ({exc})") from None
    rank = settings.get("r")
    if not isinstance(rank, int) or not 1 <= rank <= LORA_RANKS[-1]:
        raise CuratorError(f"{config}: LoRA rank 'r' must be an integer from 1 to {LORA_RANKS[-1]}, got {rank!r}")
    return {"path": str(folder.resolve()), "base": settings.get("base_model_name_or_path"), "r": rank}


def _has_chat_template(folder: Path) -> bool:
    """Whether a model folder holds a chat template where transformers looks for one."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def _refused(exc: Exception) -> bool:
    """Whether vLLM refused a request as invalid (its fault is the request's, not the engine's)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return "VLLMClientError" in names or (isinstance(exc, ValueError) and "ChatTemplateResolutionError" not in names)


def _no_chat_template(model: str) -> CuratorError:
    return CuratorError(
        f"{model}: the model folder has no chat template, which --chat needs "
        "(add chat_template.jinja or tokenizer_config.json 'chat_template'), or use --completions"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@hookimpl
def register_backends(register: RegisterBackend) -> None:
    register(VLLMBackend)
