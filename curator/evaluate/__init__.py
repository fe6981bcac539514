"""``curator eval``: accuracy of a model (and adapter) on a test set, four ways.

- ``greedy``: one completion with sampling off.
- ``self-consistency``: n samples at temperature T, majority vote.
- ``weighted``: votes weighted by length-normalised sequence probability.
- ``ranked`` (ASC): votes weighted by ``c0 + c1·s`` from a ranker's score.

Generation goes through the same backends as ``curator generate``, so a
vLLM server (``--base-url``) makes evaluation fast. Importing this package
does not import torch::

    from curator.evaluate import EvalConfig, run_eval

    result = run_eval(EvalConfig(model="Qwen/Qwen2.5-1.5B", adapter="adapters/iwsi", data="test.jsonl",
                                 task="gsm8k", strategy="self-consistency", n=16, output="eval/iwsi"))
"""

from __future__ import annotations

from curator.evaluate.config import EvalConfig, EvalResult
from curator.evaluate.run import run_eval

__all__ = ["EvalConfig", "EvalResult", "run_eval"]
