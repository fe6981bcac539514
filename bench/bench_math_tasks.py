"""MATH answer checking: how often each task agrees with math-verify, and how fast each checks.

On generated MATH-style pairs (``bench/math_answer_cases.py``) the reference
label is math-verify reading both whole texts itself (``verify(parse(gold
solution), parse(rationale))``, its default extraction). Each task labels the
pair as a build does: ``equal_batch(extract_batch(rationales),
normalize_reference_batch(solutions))``. Printed: agreement per task and per
answer kind / style, the disagreements by kind, and rows/s of each task's
check against ``math`` in the same process (math-verify's parse cache is
cleared first, so its figure is a cold pass).

    python bench/bench_math_tasks.py [--pairs 3000] [--seed 0] [--show 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from math_answer_cases import cases  # noqa: E402

TASKS = ("math", "math:answer_line", "math_verify", "math_verify:answer_line")


def reference_labels(pairs: list) -> tuple[list[bool], float]:
    from math_verify import parse, verify

    started = time.perf_counter()
    labels = [bool(verify(parse(case.gold_solution), parse(case.rationale))) for case in pairs]
    return labels, time.perf_counter() - started


def task_labels(name: str, pairs: list) -> tuple[list[bool], float]:
    from curator.plugins import get_registry
    from curator_plugins import answers_math_verify

    answers_math_verify._parsed.cache_clear()
    task = get_registry().task(name)
    rationales = pa.array([case.rationale for case in pairs])
    solutions = pa.array([case.gold_solution for case in pairs])
    started = time.perf_counter()
    labels = task.equal_batch(task.extract_batch(rationales), task.normalize_reference_batch(solutions))
    return labels.to_pylist(), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=3, help="disagreements printed per task")
    args = parser.parse_args()
    pairs = list(cases(args.pairs, args.seed))
    reference, reference_seconds = reference_labels(pairs)
    print(f"{len(pairs)} pairs; math-verify on whole texts says {sum(reference)} equal "
          f"({len(pairs) / reference_seconds:,.0f} pairs/s)")
    baseline = None
    for name in TASKS:
        labels, seconds = task_labels(name, pairs)
        rate = len(pairs) / seconds
        baseline = baseline or rate
        agree = [a == b for a, b in zip(labels, reference, strict=True)]
        print(f"\n{name}: agrees with math-verify on {sum(agree)}/{len(agree)} = {100 * sum(agree) / len(agree):.2f} %"
              f"; {rate:,.0f} rows/s ({rate / baseline:.3f}x math)")
        for field in ("style", "relation"):
            groups = defaultdict(list)
            for case, ok in zip(pairs, agree, strict=True):
                groups[getattr(case, field)].append(ok)
            print(f"  by {field}: " + ", ".join(f"{k} {100 * sum(v) / len(v):.1f} % of {len(v)}"
                                               for k, v in sorted(groups.items())))
        wrong = Counter(case.kind for case, ok in zip(pairs, agree, strict=True) if not ok)
        print("  disagreements by kind: " + (", ".join(f"{k} {n}" for k, n in wrong.most_common()) or "none"))
        shown = 0
        for case, ok, label, ref in zip(pairs, agree, labels, reference, strict=True):
            if not ok and shown < args.show:
                shown += 1
                tail = case.rationale[-70:].replace("\n", " ")
                print(f"    task {label}, math-verify {ref}: gold {case.gold_solution[-40:]!r} ... {tail!r}")


if __name__ == "__main__":
    main()
