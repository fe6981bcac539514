"""``curator generate``: candidate rationales for a question file (METHODS §2).

A teacher writes rationales for Fine-tune-CoT (zero-shot CoT, two stages), or
the model writes its own for LMSI / IWSI (few-shot CoT, ``n`` samples at
temperature T). Any registered backend serves the requests; the run is
resumable and its output is ``candidates.parquet`` in the row schema::

    from curator.backend import BackendOptions
    from curator.generate import GenerateSettings, run_generate

    settings = GenerateSettings(input="questions.jsonl", output="out", task="gsm8k",
                                backend="openai", model="my-model", n=8, temperature=0.7)
    summary = run_generate(settings, BackendOptions(model="my-model", base_url="http://localhost:8000/v1"))
"""

from __future__ import annotations

from curator.generate.prompts import ANSWER_TRIGGER, FewShotCoT, Prompting, ZeroShotCoT, load_exemplars
from curator.generate.runner import GenerateSettings, Summary, candidate_schema, run_generate

__all__ = [
    "ANSWER_TRIGGER",
    "FewShotCoT",
    "GenerateSettings",
    "Prompting",
    "Summary",
    "ZeroShotCoT",
    "candidate_schema",
    "load_exemplars",
    "run_generate",
]
