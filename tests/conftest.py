from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "gsm8k"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own score cache, so no test sees another's scores."""
    monkeypatch.setenv("CURATOR_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def stub():
    """Start loopback OpenAI stub servers on demand; all are stopped after the test."""
    from curator.testing.openai_server import OpenAIStubServer, StubConfig

    servers = []

    def start(**config):
        server = OpenAIStubServer(StubConfig(**config)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def one_thread():
    """One torch thread, so exact comparisons do not depend on thread scheduling."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


OPT_IN = ("ecosystem",)
"""Markers of suites that run only when ``-m`` names them (they install or start heavy peers)."""


def pytest_collection_modifyitems(config, items):
    chosen = config.getoption("-m") or ""
    for item in items:
        for marker in OPT_IN:
            if marker in item.keywords and marker not in chosen:
                item.add_marker(pytest.mark.skip(reason=f"opt-in: pytest -m {marker}"))
