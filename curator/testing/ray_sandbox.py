"""Running Ray where its servers can reach nothing but loopback: a fresh network namespace.

Ray's servers listen on every interface and its agent binds the machine's
own address, so tests and benchmarks that start Ray run it inside
``unshare --net`` (as root), with only ``lo`` up, token auth off and its
files in a temporary folder. :func:`unavailable` says why that cannot be
done here, for a skip message.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def unavailable() -> str | None:
    """Why Ray cannot be started in a namespace here, or None when it can."""
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install 'rationale-curator[ray]')"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) is not installed"
    probe = subprocess.run(["unshare", "--net", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace (unshare --net needs root): {probe.stderr.strip()}"
    return None


def run_python(args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float | None = None,
               capture: bool = True) -> subprocess.CompletedProcess:
    """``python ARGS`` in a new network namespace holding only loopback, with Ray's files in a temporary folder."""
    ray_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    full_env = {**os.environ, **(env or {}), "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": str(ray_dir),
                "RAY_USAGE_STATS_ENABLED": "0"}
    command = shlex.join([sys.executable, *args])
    try:
        return subprocess.run(["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {command}"],
                              env=full_env, timeout=timeout, capture_output=capture, text=True)
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
