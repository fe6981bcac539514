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
    return testing.make_candidates


@pytest.fixture
def run_filter(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATOR_CACHE", str(tmp_path / "curator-cache"))
    return testing.run_filter


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from curator.testing.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
