"""``curator generate`` against the servers a user would point it at, each beside a baseline run in this process.

Three sections, each printing a Markdown table:

- ``client`` (``--server stub``): the client's own cost. The stub OpenAI
  server (:mod:`curator.testing.openai_server`) answers at once, in its own
  process; ``curator generate`` (few-shot CoT, ``--n 4`` in one request per
  question) runs against it interleaved with a minimal aiohttp client (a
  semaphore of 256 over one shared session, JSON parsed, nothing written)
  sending the same bodies. Completions/s are over wall time; client CPU per
  request is this process's CPU time over the requests sent (everything
  ``curator generate`` does: reading questions, prompts, retries' book-
  keeping, parsing, Parquet). Repetitions are interleaved; medians shown.
- ``breakdown`` (``--server stub --breakdown``): where the client CPU of
  ``curator generate`` goes. The client section's run again with parts of
  the request path swapped out: the openai SDK's own aiohttp transport
  (``DefaultAioHttpClient``) instead of the project's carrier; no openai
  client (the backend posts the same bodies with aiohttp itself); no
  network (every request answered at once from memory).
- ``latency`` (``--server stub``): the sliding window. The same run with the
  default concurrency and with ``--concurrency 1`` for server latencies of
  0, 50 and 200 ms.
- ``vllm`` (``--server vllm``): a real vLLM server (started here with
  :class:`curator.testing.vllm_server.VLLMServer`, or ``--base-url`` for a
  running one) on ``--model``; ``curator generate`` and the minimal client
  send the same prompts with the same per-question seeds, so the server does
  the same work, and completion tokens/s of both are compared.

    python bench/bench_generate.py [--questions 2000] [--repeats 3] [--delays 0,0.05,0.2] [--breakdown]
    python bench/bench_generate.py --server vllm --model DIR [--base-url URL] [--questions 64]
    python bench/bench_generate.py --server transformers --model DIR [--questions 16] [--n 4]

The vLLM section needs vllm importable (``bench/vllm_cpu.sh`` makes such an
environment and runs it).

The sequential run of the latency section is shortened at high latency
(about ten seconds' worth of requests, at least 50); requests per second do
not depend on its length.

``--server transformers --model DIR`` measures the transformers backend
instead (see :func:`transformers_backend_speed`): generated tokens per second
of the backend on few-shot GSM8K prompts against ``model.generate`` called
one prompt at a time, same prompts, samples, temperature and stop string.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from curator.backend import SamplingParams
from curator.generate import GenerateConfig, run_generate
from curator.generate.prompts import QUESTION_STOP, make_prompting
from curator.generate.runner import derive_seed

DEFAULT_CONCURRENCY = 256


def serve_stub(delay: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "curator.testing.openai_server", "--delay", str(delay)],
        stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def server_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats") as answer:
        return json.loads(answer.read())


def write_questions(path: Path, count: int) -> Path:
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps({"id": f"q{i}", "question": f"Kai has {i} marbles and finds {i % 7} more. How many?"}))
            out.write("\n")
    return path


# --- the baseline: a minimal async client ---------------------------------------------------------------

def request_bodies(questions: Path, model: str, n: int, temperature: float, max_tokens: int,
                   seed: int | None) -> list[dict[str, Any]]:
    """The completions bodies ``curator generate --prompt few-shot-cot`` sends for these questions."""
    prompting = make_prompting("few-shot-cot", None, "gsm8k")
    bodies = []
    for line in questions.open():
        record = json.loads(line)
        body = {"model": model, "prompt": prompting.first(record["question"], SamplingParams()).prompt, "n": n,
                "temperature": temperature, "top_p": 1.0, "max_tokens": max_tokens, "logprobs": 1,
                "stop": [QUESTION_STOP]}
        question_seed = derive_seed(seed, record["id"], 1)
        if question_seed is not None:
            body["seed"] = question_seed
        bodies.append(body)
    return bodies


async def minimal_client(base_url: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    """What a user would write by hand: a semaphore over one shared aiohttp session."""
    import aiohttp

    slots = asyncio.Semaphore(concurrency)
    completions = tokens = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one(body: dict[str, Any]) -> None:
            nonlocal completions, tokens
            async with slots, session.post(f"{base_url}/completions", json=body) as answer:
                data = await answer.json()
            completions += len(data["choices"])
            tokens += data["usage"]["completion_tokens"]

        await asyncio.gather(*(one(body) for body in bodies))
    return {"completions": completions, "completion_tokens": tokens, "requests": len(bodies)}


def timed(run: Callable[[], dict[str, float]]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    counts = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {**counts, "seconds": wall, "completions_s": counts["completions"] / wall,
            "tokens_s": counts["completion_tokens"] / wall, "cpu_ms": 1000 * cpu / counts["requests"]}


def curator_run(questions: Path, output: Path, base_url: str, model: str, n: int, temperature: float,
                max_tokens: int, seed: int | None) -> dict[str, float]:
    config = GenerateConfig(input=str(questions), output=str(output), task="gsm8k", backend="openai",
                            model=model, base_url=base_url, prompt="few-shot-cot", n=n, temperature=temperature,
                            max_tokens=max_tokens, seed=seed, progress=False)
    manifest = run_generate(config).manifest
    return {"completions": manifest["counts"]["rows"], "completion_tokens": manifest["usage"]["completion_tokens"],
            "requests": manifest["usage"]["requests"]}


def compare(root: Path, base_url: str, model: str, questions: Path, repeats: int, n: int, temperature: float,
            max_tokens: int, seed: int | None) -> list[tuple[dict[str, float], dict[str, float]]]:
    """Interleaved (baseline, curator) pairs on the same server and bodies, first one then the other first.

    A first pass over every prompt (one token each) fills a server's prefix
    cache, so neither side gains from the other having sent the prompts.
    """
    bodies = request_bodies(questions, model, n, temperature, max_tokens, seed)
    asyncio.run(minimal_client(base_url, [{**body, "max_tokens": 1, "n": 1} for body in bodies], DEFAULT_CONCURRENCY))
    pairs = []
    for repeat in range(repeats):
        def baseline() -> dict[str, float]:
            return timed(lambda: asyncio.run(minimal_client(base_url, bodies, DEFAULT_CONCURRENCY)))

        def ours(r: int = repeat) -> dict[str, float]:
            return timed(lambda: curator_run(questions, root / f"run-{r}", base_url, model, n, temperature,
                                             max_tokens, seed))

        if repeat % 2:
            mine = ours()
            pairs.append((baseline(), mine))
        else:
            pairs.append((baseline(), ours()))
    return pairs


def median(pairs: list[tuple[dict[str, float], dict[str, float]]], side: int, key: str) -> float:
    return statistics.median(pair[side][key] for pair in pairs)


# --- sections ----------------------------------------------------------------------------------------------

def client_section(root: Path, questions_count: int, repeats: int) -> None:
    process, base_url = serve_stub(0.0)
    try:
        questions = write_questions(root / "client.jsonl", questions_count)
        warm = write_questions(root / "warm.jsonl", 50)
        curator_run(warm, root / "warm", base_url, "stub", 4, 0.7, 64, 1)  # imports and first connections
        pairs = compare(root / "client", base_url, "stub", questions, repeats, 4, 0.7, 64, 1)
    finally:
        process.terminate()
        process.wait()
    print(f"\n### Client cost: instant stub server, {questions_count} questions, n = 4, one request each "
          f"({repeats} interleaved repetitions, alternating which goes first; medians)\n")
    print("| client | completions/s | client CPU per request | ÷ baseline |")
    print("|---|---|---|---|")
    ratios = [ours["completions_s"] / base["completions_s"] for base, ours in pairs]
    print(f"| minimal aiohttp (baseline) | {median(pairs, 0, 'completions_s'):,.0f} | "
          f"{median(pairs, 0, 'cpu_ms'):.3f} ms | 1.00 |")
    print(f"| `curator generate` | {median(pairs, 1, 'completions_s'):,.0f} | {median(pairs, 1, 'cpu_ms'):.3f} ms "
          f"| **{statistics.median(ratios):.2f}** (each: {', '.join(f'{r:.2f}' for r in ratios)}) |")


@contextlib.contextmanager
def sdk_transport() -> Iterator[None]:
    """The openai SDK's own aiohttp transport carries the requests."""
    import openai

    from curator_plugins import openai_backend

    def carrier(httpx: Any, connections: int, timeout: float) -> Any:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return openai.DefaultAioHttpClient(limits=limits, timeout=timeout)

    with patched(openai_backend, "aiohttp_client", carrier):
        yield


@contextlib.contextmanager
def without_sdk() -> Iterator[None]:
    """The backend posts its bodies with one aiohttp session of its own: no openai client on the path."""
    import aiohttp

    from curator_plugins import openai_backend

    sessions: list[aiohttp.ClientSession] = []
    backend_class = openai_backend.OpenAIBackend

    async def call(self: Any, request: Any, n: int, offset: int) -> Any:
        if not sessions:
            sessions.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.options.concurrency)))
        async with self._slots, sessions[0].post(self._url, data=json.dumps(self._body(request, n, offset)),
                                                 headers={"Content-Type": "application/json"}) as answer:
            body = await answer.read()
        return openai_backend._parse(body, self.options.chat, request.params.stop)

    async def close(self: Any) -> None:
        while sessions:
            await sessions.pop().close()
        await original_close(self)

    original_close = backend_class.close
    with patched(backend_class, "_call", call), patched(backend_class, "close", close):
        yield


@contextlib.contextmanager
def without_network() -> Iterator[None]:
    """Every request answered at once from memory with one stub answer: what is left is curator's own work."""
    from curator.testing.openai_server import StubConfig, respond
    from curator_plugins import openai_backend

    prompting = make_prompting("few-shot-cot", None, "gsm8k")
    first = {"prompt": prompting.first("Kai has 3 marbles and finds 3 more. How many?", SamplingParams()).prompt,
             "n": 4, "temperature": 0.7, "max_tokens": 64, "logprobs": 1, "stop": [QUESTION_STOP], "seed": 1}
    answer = json.dumps(respond(first, StubConfig())).encode()

    async def call(self: Any, request: Any, n: int, offset: int) -> Any:
        self._body(request, n, offset)
        await asyncio.sleep(0)
        return openai_backend._parse(answer, self.options.chat, request.params.stop)

    with patched(openai_backend.OpenAIBackend, "_call", call):
        yield


@contextlib.contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def breakdown_section(root: Path, questions_count: int, repeats: int) -> None:
    ways: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
        "as shipped": contextlib.nullcontext,
        "the SDK's own aiohttp transport (`DefaultAioHttpClient`) instead of the project's carrier": sdk_transport,
        "no openai client: the backend posts with aiohttp itself": without_sdk,
        "no network: answers from memory (curator's own work)": without_network,
    }
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    process, base_url = serve_stub(0.0)
    try:
        questions = write_questions(root / "breakdown.jsonl", questions_count)
        for repeat in range(repeats):
            for index, (name, way) in enumerate(ways.items()):
                output = root / f"breakdown-{repeat}-{index}"
                with way():
                    run = timed(lambda o=output: curator_run(questions, o, base_url, "stub", 4, 0.7, 64, 1))
                cpu[name].append(run["cpu_ms"])
    finally:
        process.terminate()
        process.wait()
    print(f"\n### Where the client CPU goes: the client section's run with parts taken away ({questions_count} "
          f"questions, n = 4; {repeats} rounds; medians)\n")
    print("| `curator generate` with | client CPU per request |")
    print("|---|---|")
    for name, values in cpu.items():
        print(f"| {name} | {statistics.median(values):.3f} ms (each: {', '.join(f'{v:.3f}' for v in values)}) |")


def latency_run(root: Path, name: str, questions: int, delay: float, concurrency: int) -> dict[str, Any]:
    """One fresh server, one ``curator generate`` run; the numbers that matter from both sides."""
    process, base_url = serve_stub(delay)
    try:
        path = write_questions(root / f"{name}.jsonl", questions)
        config = GenerateConfig(
            input=str(path), output=str(root / name), task="gsm8k", backend="openai", model="stub",
            prompt="few-shot-cot", max_tokens=64, progress=False, base_url=base_url, concurrency=concurrency,
        )
        manifest = run_generate(config).manifest
        server = server_stats(base_url)
    finally:
        process.terminate()
        process.wait()
    return {
        "requests": manifest["usage"]["requests"],
        "seconds": manifest["wall_seconds"],
        "rps": manifest["requests_per_second"],
        "in_flight_client": manifest["in_flight"]["mean"],
        "in_flight_server": round(server["mean_in_flight"], 1),
        "peak_in_flight": manifest["in_flight"]["peak"],
    }


def latency_section(root: Path, delays: list[float], requests: int, sequential: int) -> None:
    print("\n### Sliding window: default concurrency against one request at a time\n")
    print("| server latency | concurrency | requests | seconds | requests/s | mean in flight (client / server) "
          "| peak | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for delay in delays:
        count = sequential if delay == 0 else min(sequential, max(50, int(10 / delay)))
        one = latency_run(root, f"seq-{delay}", count, delay, 1)
        window = latency_run(root, f"conc-{delay}", requests, delay, DEFAULT_CONCURRENCY)
        for label, run in (("1 (sequential)", one), (f"{DEFAULT_CONCURRENCY} (default)", window)):
            ratio = run["rps"] / one["rps"]
            print(f"| {delay * 1000:.0f} ms | {label} | {run['requests']} | {run['seconds']:.2f} | {run['rps']:.0f} "
                  f"| {run['in_flight_client']:.1f} / {run['in_flight_server']:.1f} | {run['peak_in_flight']} "
                  f"| {ratio:.1f}× |")


def vllm_section(root: Path, args: argparse.Namespace) -> None:
    from curator.testing.vllm_server import VLLMServer

    server = None
    base_url, model = args.base_url, args.served_name
    if base_url is None:
        if args.model is None:
            raise SystemExit("--server vllm needs --model DIR (or --base-url of a running server)")
        server = VLLMServer(args.model, "--dtype", "float32", "--max-model-len", "2048", "--seed", "0",
                            name=args.served_name).start()
        base_url = server.base_url
    try:
        questions = write_questions(root / "vllm.jsonl", args.questions)
        warm = write_questions(root / "vllm-warm.jsonl", 4)
        curator_run(warm, root / "vllm-warm", base_url, model, 1, 0.8, 8, 1)
        pairs = compare(root / "vllm", base_url, model, questions, args.repeats, args.n, 0.8, args.max_tokens, 1)
    finally:
        if server is not None:
            server.stop()
    same = all(base["completion_tokens"] == ours["completion_tokens"] for base, ours in pairs)
    print(f"\n### vLLM server: {args.questions} few-shot questions, n = {args.n}, max {args.max_tokens} tokens, "
          f"T = 0.8, same seeds ({args.repeats} interleaved repetitions, alternating which goes first; medians; "
          f"same completion tokens on both sides: {same})\n")
    print("| client | completion tokens/s | completions/s | seconds | client CPU per request | ÷ baseline |")
    print("|---|---|---|---|---|---|")
    ratios = [ours["tokens_s"] / base["tokens_s"] for base, ours in pairs]
    for side, label in ((0, "minimal aiohttp (baseline)"), (1, "`curator generate`")):
        ratio = "1.00" if side == 0 else (f"**{statistics.median(ratios):.2f}** "
                                          f"(each: {', '.join(f'{r:.2f}' for r in ratios)})")
        print(f"| {label} | {median(pairs, side, 'tokens_s'):,.1f} | {median(pairs, side, 'completions_s'):.1f} | "
              f"{median(pairs, side, 'seconds'):.1f} | {median(pairs, side, 'cpu_ms'):.2f} ms | {ratio} |")


# -- the transformers backend against model.generate one prompt at a time ------------------------------


def transformers_backend_speed(args: argparse.Namespace) -> None:
    """Tokens/s of ``--backend transformers`` vs ``model.generate`` per prompt; FLOP/s against the GEMM peak.

    Both sample ``--n`` continuations of each of ``--questions`` few-shot
    CoT prompts (GSM8K train questions, the built-in exemplars) at
    ``--temperature``, stopping at EOS or ``\nQ:``, up to ``--max-tokens``.
    The baseline is what a script does without batching: ``model.generate``
    for one prompt and one sample at a time, with its ``stop_strings``.
    Generated tokens count up to and including the stop. Achieved FLOP/s
    count 2 per weight per generated token plus its attention over the
    context (prefill not counted, so both ways are credited the same work).
    """
    import torch
    from measure import attention_flops_per_token, gemm_peak_flops, gib, matmul_parameters, peak_rss

    from curator.backend import BackendOptions
    from curator_plugins.transformers_backend import TransformersBackend

    train = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
    if not train.exists():
        train = Path(__file__).resolve().parent.parent / "examples" / "smollm2" / "data" / "train.jsonl"
    questions = [json.loads(line)["question"] for line, _ in zip(train.open(), range(args.questions), strict=False)]
    prompting = make_prompting("few-shot-cot", None, "gsm8k")
    params = SamplingParams(n=args.n, temperature=args.temperature, max_tokens=args.max_tokens, stop=(QUESTION_STOP,),
                            logprobs=True, seed=0)
    requests = [prompting.first(q, params) for q in questions]
    options = BackendOptions(model=args.model, device="cpu", seed=0, batch_size=args.batch_size)

    backend = TransformersBackend(options)
    asyncio.run(backend.open())  # loaded once; both ways use this model
    lm = backend._lm

    def ours() -> tuple[int, float]:
        async def run_all():  # the path curator generate takes: requests queued, batched by the backend
            return await asyncio.gather(*(backend.complete(r) for r in requests))

        started = time.perf_counter()
        results = asyncio.run(run_all())
        return sum(c.n_tokens or 0 for r in results for c in r.completions), time.perf_counter() - started

    tokenizer, model = lm.tokenizer, lm.model

    def one_at_a_time() -> tuple[int, float]:
        started, tokens = time.perf_counter(), 0
        with torch.inference_mode():
            for request in requests:
                ids = tokenizer(request.prompt, return_tensors="pt")
                for sample in range(args.n):
                    torch.manual_seed(sample)
                    out = model.generate(**ids, max_new_tokens=args.max_tokens, do_sample=args.temperature > 0,
                                         temperature=args.temperature, top_p=1.0, top_k=0,
                                         stop_strings=[QUESTION_STOP], tokenizer=tokenizer,
                                         pad_token_id=lm.pad_id)
                    tokens += out.shape[1] - ids["input_ids"].shape[1]  # one row: no padding
        return tokens, time.perf_counter() - started

    prompt_length = statistics.mean(len(tokenizer(r.prompt)["input_ids"]) for r in requests)
    flops_per_token = 2.0 * matmul_parameters(model.config) + attention_flops_per_token(
        model.config, prompt_length + args.max_tokens / 4
    )
    ways = {"model.generate, one prompt at a time": one_at_a_time, "transformers backend (curator)": ours}
    rates: dict[str, list[float]] = {name: [] for name in ways}
    memory: dict[str, int] = {}
    gemm = []
    for _ in range(args.rounds):
        gemm.append(gemm_peak_flops())
        for name, way in ways.items():
            with peak_rss() as peak:
                tokens, seconds = way()
            memory[name] = max(memory.get(name, 0), peak["bytes"])
            rates[name].append(tokens / seconds)
            print(f"{name}: {tokens} tokens in {seconds:.1f} s")
    base = statistics.median(rates["model.generate, one prompt at a time"])
    peak_flops = statistics.median(gemm)
    print(f"\n{len(requests)} few-shot prompts (mean {prompt_length:.0f} tokens) x {args.n} samples, T={args.temperature}, "
          f"max {args.max_tokens} tokens, batch size {backend.batch_size}; fp32 GEMM peak {peak_flops / 1e9:.1f} GFLOP/s")
    print("| way | generated tokens/s | vs one at a time | GFLOP/s | of GEMM peak | peak RSS |")
    print("|---|---|---|---|---|---|")
    for name, values in rates.items():
        rate = statistics.median(values)
        achieved = rate * flops_per_token
        print(f"| {name} | {rate:.1f} | {rate / base:.2f}x | {achieved / 1e9:.1f} | {achieved / peak_flops:.1%} "
              f"| {gib(memory[name])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("stub", "vllm", "transformers"), default="stub",
                        help="transformers: the transformers backend in this process on --model")
    parser.add_argument("--questions", type=int, default=None,
                        help="questions per run (stub: 2000; vllm: 64; transformers: 16)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions of each comparison")
    parser.add_argument("--delays", default="0,0.05,0.2",
                        help="stub: server latencies for the sliding-window table ('' to skip it)")
    parser.add_argument("--breakdown", action="store_true",
                        help="stub: also the client CPU with parts of the request path taken away")
    parser.add_argument("--requests", type=int, default=3000, help="stub: questions of each concurrent latency run")
    parser.add_argument("--sequential", type=int, default=300, help="stub: questions of each sequential run")
    parser.add_argument("--model", default=None, help="vllm, transformers: model folder")
    parser.add_argument("--base-url", default=None, help="vllm: a running server instead of starting one")
    parser.add_argument("--served-name", default="bench", help="vllm: the model's name at the server")
    parser.add_argument("--n", type=int, default=4, help="vllm, transformers: samples per question")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="vllm, transformers: longest rationale (vllm: 48; transformers: 128)")
    parser.add_argument("--temperature", type=float, default=0.7, help="transformers: sampling temperature")
    parser.add_argument("--batch-size", type=int, default=None, help="transformers: backend batch size")
    parser.add_argument("--rounds", type=int, default=1, help="transformers: rounds of both ways")
    args = parser.parse_args()
    if args.server == "transformers":
        if args.model is None:
            raise SystemExit("--server transformers needs --model DIR")
        args.questions, args.max_tokens = args.questions or 16, args.max_tokens or 128
        transformers_backend_speed(args)
        return
    args.max_tokens = args.max_tokens or 48
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        root = Path(tmp)
        if args.server == "vllm":
            args.questions = args.questions or 64
            vllm_section(root, args)
            return
        client_section(root, args.questions or 2000, args.repeats)
        if args.breakdown:
            breakdown_section(root, args.questions or 2000, args.repeats)
        delays = [float(d) for d in args.delays.split(",") if d.strip()]
        if delays:
            latency_section(root, delays, args.requests, args.sequential)


if __name__ == "__main__":
    main()
