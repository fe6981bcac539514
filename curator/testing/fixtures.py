"""A pytest plugin (entry point ``pytest11``) with fixtures for filter authors.

Installed with rationale-curator, so a plugin's own test suite gets them
without a conftest: ``make_candidates``, ``run_filter``, and ``tiny_llama``,
the path of a tiny Llama with a tokenizer trained on the spot (needs the
``lm`` extra; built once per test session).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from curator import testing


@pytest.fixture
def make_candidates():
    """:func:`curator.testing.make_candidates`: a candidate table from answers per question."""
    return testing.make_candidates


@pytest.fixture
def run_filter(tmp_path, monkeypatch):
    """:func:`curator.testing.run_filter`, with ``CURATOR_CACHE`` in the test's temporary folder.

    ``run_filter`` itself always scores into a fresh temporary cache; the
    variable isolates whatever else the test builds as well.
    """
    monkeypatch.setenv("CURATOR_CACHE", str(tmp_path / "curator-cache"))
    return testing.run_filter


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """The folder of a tiny random Llama (about 100k parameters) and its tokenizer, built once per session.

    Saved in the Hugging Face layout (``config.json``, safetensors weights,
    a byte-level BPE tokenizer trained on arithmetic word problems), so a
    model-backed filter loads it by path as it would a hub model. Skips the
    test when torch (the ``lm`` extra) is missing.
    """
    pytest.importorskip("torch")
    from curator.testing.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
