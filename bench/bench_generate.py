"""Request throughput of ``curator generate``: default concurrency vs the same client one at a time.

The stub OpenAI server (:mod:`curator.testing.openai_server`) runs in its own
process, so it does not share the client's interpreter. For each server
latency (0 = it answers at once) the same few-shot generation runs twice in
this process: with the default concurrency, and with ``--concurrency 1``
(the same client used sequentially). Throughput is the manifest's requests
per second of wall time, start-up included; "in flight" is the time-weighted
mean number of requests at the server, seen by the client and by the server.

    python bench/bench_generate.py [--requests 3000] [--sequential 300] [--delays 0,0.05,0.2]

The sequential run is shortened at high latency (about ten seconds' worth
of requests, at least 50); requests per second do not depend on its length.

With ``--model DIR`` it measures the transformers backend instead (see
:func:`transformers_backend_speed`): generated tokens per second of the
backend on few-shot GSM8K prompts against ``model.generate`` called one
prompt at a time, same prompts, samples, temperature and stop string.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from curator.backend import BackendOptions
from curator.generate import GenerateSettings, run_generate

DEFAULT_CONCURRENCY = 256


def serve(delay: float) -> tuple[subprocess.Popen[str], str]:
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


def generate(root: Path, name: str, questions: int, delay: float, concurrency: int) -> dict[str, Any]:
    """One fresh server, one ``curator generate`` run; the numbers that matter from both sides."""
    process, base_url = serve(delay)
    try:
        path = write_questions(root / f"{name}.jsonl", questions)
        settings = GenerateSettings(
            input=str(path), output=str(root / name), task="gsm8k", backend="openai", model="stub",
            prompt="few-shot-cot", max_tokens=64, progress=False,
        )
        options = BackendOptions(model="stub", base_url=base_url, concurrency=concurrency)
        manifest = run_generate(settings, options).manifest
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
    import statistics
    import time

    import torch
    from measure import attention_flops_per_token, gemm_peak_flops, gib, matmul_parameters, peak_rss

    from curator.backend import SamplingParams
    from curator.generate.prompts import QUESTION_STOP, make_prompting
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

    import asyncio

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
    parser.add_argument("--requests", type=int, default=3000, help="questions (= requests) for the concurrent run")
    parser.add_argument("--sequential", type=int, default=300, help="questions for the sequential run")
    parser.add_argument("--delays", default="0,0.05,0.2", help="server latencies to measure, in seconds")
    parser.add_argument("--model", default=None, help="measure the transformers backend on this model folder instead")
    parser.add_argument("--questions", type=int, default=16, help="--model: few-shot prompts")
    parser.add_argument("--n", type=int, default=4, help="--model: samples per prompt")
    parser.add_argument("--temperature", type=float, default=0.7, help="--model: sampling temperature")
    parser.add_argument("--max-tokens", type=int, default=128, help="--model: longest completion")
    parser.add_argument("--batch-size", type=int, default=None, help="--model: backend batch size")
    parser.add_argument("--rounds", type=int, default=1, help="--model: rounds of both ways")
    args = parser.parse_args()
    if args.model:
        transformers_backend_speed(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        root = Path(tmp)
        generate(root, "warm-up", 50, 0.0, DEFAULT_CONCURRENCY)  # imports and first connections
        print("| server latency | concurrency | requests | seconds | requests/s | mean in flight (client / server) "
              "| peak | speed-up |")
        print("|---|---|---|---|---|---|---|---|")
        for delay in (float(d) for d in args.delays.split(",")):
            count = args.sequential if delay == 0 else min(args.sequential, max(50, int(10 / delay)))
            sequential = generate(root, f"seq-{delay}", count, delay, 1)
            concurrent = generate(root, f"conc-{delay}", args.requests, delay, DEFAULT_CONCURRENCY)
            for label, run in (("1 (sequential)", sequential), (f"{DEFAULT_CONCURRENCY} (default)", concurrent)):
                ratio = run["rps"] / sequential["rps"]
                print(f"| {delay * 1000:.0f} ms | {label} | {run['requests']} | {run['seconds']:.2f} | {run['rps']:.0f} "
                      f"| {run['in_flight_client']:.1f} / {run['in_flight_server']:.1f} | {run['peak_in_flight']} "
                      f"| {ratio:.1f}× |")


if __name__ == "__main__":
    main()
