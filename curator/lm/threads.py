"""How many threads torch computes with on a CPU: no more than the CPUs this process may actually use.

torch sizes its thread pool from the CPUs it can see (the affinity mask,
often only the physical cores of it), but not from a container's CPU quota:
in a container limited to two CPUs of a 64-core host it would run 32 or 64
threads, each getting a sliver of the quota and waiting at every barrier for
the others. Nor does it see other busy processes: on a 2-core machine where
another job keeps a core busy, two threads scored at 3,105 tokens/s and one
at 6,804 (bench/RESULTS.md), each thread waiting at every barrier for the
one that lost its core. So the first time a model is put on the CPU, the
pool is capped at the process's CPU allowance (the affinity mask and the
cgroup quota, v1 or v2, whichever is smaller, rounded down), less the CPUs
other processes keep busy at that moment (runnable tasks, as GNU OpenMP's
dynamic mode counts the load), at least one. ``OMP_NUM_THREADS``, when set,
is the user's choice and is kept: set it where scores must agree to the last
bit between runs on a machine whose load changes (other thread counts sum in
another order). What was chosen, and why, is recorded for the manifest.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

_chosen: dict[str, Any] | None = None


def cpu_allowance(proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")) -> tuple[float, str]:
    """The CPUs this process may use, and what limits them (``affinity`` or ``cgroup quota``)."""
    try:
        cpus: float = float(len(os.sched_getaffinity(0)))
        limit = "affinity"
    except AttributeError:  # not Linux
        cpus, limit = float(os.cpu_count() or 1), "cpu count"
    quota = _cgroup_quota(proc, cgroup_root)
    if quota is not None and quota < cpus:
        cpus, limit = quota, "cgroup quota"
    return cpus, limit


def _cgroup_quota(proc: Path, root: Path) -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup or its parents; None when unlimited."""
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        version = 2 if controllers == "" else 1 if "cpu" in controllers.split(",") else 0
        if not version:
            continue
        base = root if version == 2 else root / controllers
        folder = base / path.lstrip("/")
        for level in [folder, *(p for p in folder.parents if p.is_relative_to(base))]:
            quota = _v2_quota(level / "cpu.max") if version == 2 else _v1_quota(level)
            if quota is not None:
                quotas.append(quota)
    return min(quotas) if quotas else None


def _v2_quota(path: Path) -> float | None:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 else quota / period


def busy_elsewhere(proc: Path = Path("/proc"), samples: int = 5, interval: float = 0.02) -> int:
    """How many CPUs other processes keep busy now: runnable tasks less this process's own, median of a few looks."""
    counts = []
    for look in range(samples):
        if look:
            time.sleep(interval)
        try:
            stat = (proc / "stat").read_text()
            running = next(int(line.split()[1]) for line in stat.splitlines() if line.startswith("procs_running "))
        except (OSError, StopIteration, ValueError):
            return 0
        counts.append(max(0, running - _own_running(proc)))
    return int(statistics.median_low(counts))


def _own_running(proc: Path) -> int:
    """This process's threads that are running or runnable (the one reading counts itself)."""
    own = 0
    for task in (proc / "self" / "task").glob("*/stat"):
        try:
            own += task.read_text().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            continue
    return max(own, 1)


def choose_threads() -> dict[str, Any]:
    """Cap torch's CPU thread pool at the CPU allowance less the busy CPUs (once per process); the choice and why."""
    global _chosen
    if _chosen is not None:
        return _chosen
    import torch

    cpus, limit = cpu_allowance()
    current = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS"):
        _chosen = {"threads": current, "from": "OMP_NUM_THREADS", "cpus": cpus}
        return _chosen
    busy = busy_elsewhere()
    allowed = max(1, math.floor(cpus + 1e-9))
    free = max(1, min(allowed, math.floor(cpus - busy + 1e-9)))
    threads = min(current, free)
    if threads != current:
        torch.set_num_threads(threads)
    counted = f"{cpus:g} CPU{'' if cpus == 1 else 's'}"
    if threads == current:
        reason = f"torch's default ({limit}: {counted})"
    elif free < allowed:
        reason = f"{limit} ({counted}), {busy} busy with other processes"
    else:
        reason = f"{limit} ({counted})"
    _chosen = {"threads": threads, "from": reason, "cpus": cpus, "busy_elsewhere": busy}
    return _chosen


def chosen_threads() -> dict[str, Any] | None:
    """What :func:`choose_threads` chose in this process, or None when no model ran on the CPU."""
    return _chosen
