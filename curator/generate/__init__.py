"""``curator generate``: candidate rationales for a question file (METHODS §2).

A teacher writes rationales for Fine-tune-CoT (zero-shot CoT, two stages), or
the model writes its own for LMSI / IWSI (few-shot CoT, ``n`` samples at
temperature T). Any registered backend serves the requests; the run is
resumable and its output is ``candidates.parquet`` in the row schema::

    from curator.generate import GenerateConfig, run_generate

    result = run_generate(GenerateConfig(input="questions.jsonl", output="out", task="gsm8k",
                                         backend="openai", base_url="http://localhost:8000/v1",
                                         model="my-model", n=8, temperature=0.7))
"""

from __future__ import annotations

from curator.generate.config import GenerateConfig, GenerateResult
from curator.generate.prompts import ANSWER_TRIGGER, FewShotCoT, Prompting, ZeroShotCoT, load_exemplars
from curator.generate.runner import candidate_schema, run_generate

__all__ = [
    "ANSWER_TRIGGER",
    "FewShotCoT",
    "GenerateConfig",
    "GenerateResult",
    "Prompting",
    "ZeroShotCoT",
    "candidate_schema",
    "load_exemplars",
    "run_generate",
]
