"""The CPU thread pool torch is given: capped at the CPUs the process may use and not kept busy by others,
never raised, recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

import curator.lm.threads as threads


def _fake_system(tmp_path: Path, cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return proc, root


def test_a_v2_quota_on_a_parent_cgroup_limits_the_allowance(tmp_path, monkeypatch):
    proc, root = _fake_system(tmp_path, "0::/job/step\n", {"job/cpu.max": "150000 100000\n",
                                                             "job/step/cpu.max": "max 100000\n"})
    assert threads._cgroup_quota(proc, root) == 1.5
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert threads.cpu_allowance(proc, root) == (1.5, "cgroup quota")
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0})
    assert threads.cpu_allowance(proc, root) == (1.0, "affinity")


def test_a_v1_quota_and_no_quota(tmp_path):
    proc, root = _fake_system(tmp_path, "4:memory:/x\n3:cpu,cpuacct:/pod\n",
                              {"cpu,cpuacct/pod/cpu.cfs_quota_us": "200000\n",
                               "cpu,cpuacct/pod/cpu.cfs_period_us": "100000\n"})
    assert threads._cgroup_quota(proc, root) == 2.0
    proc, root = _fake_system(tmp_path / "free", "1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n",
                                                                 "cpu/cpu.cfs_period_us": "100000\n"})
    assert threads._cgroup_quota(proc, root) is None


@pytest.fixture
def fresh_choice(monkeypatch):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0)  # a quiet machine, unless a test says otherwise
    yield torch
    torch.set_num_threads(before)


def test_the_pool_is_capped_at_the_quota_and_the_choice_recorded(fresh_choice, monkeypatch):
    torch = fresh_choice
    torch.set_num_threads(4)
    monkeypatch.setattr(threads, "cpu_allowance", lambda: (1.5, "cgroup quota"))
    chosen = threads.choose_threads()
    assert chosen == {"threads": 1, "from": "cgroup quota (1.5 CPUs)", "cpus": 1.5, "busy_elsewhere": 0}
    assert torch.get_num_threads() == 1
    torch.set_num_threads(3)
    assert threads.choose_threads() is chosen  # once per process
    assert threads.chosen_threads() == chosen


def test_cpus_other_processes_keep_busy_are_left_to_them(fresh_choice, monkeypatch):
    torch = fresh_choice
    torch.set_num_threads(4)
    monkeypatch.setattr(threads, "cpu_allowance", lambda: (4.0, "affinity"))
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 1)
    assert threads.choose_threads() == {"threads": 3, "from": "affinity (4 CPUs), 1 busy with other processes",
                                        "cpus": 4.0, "busy_elsewhere": 1}
    assert torch.get_num_threads() == 3
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 9)  # never fewer than one
    assert threads.choose_threads()["threads"] == 1 and torch.get_num_threads() == 1


def test_busy_cpus_are_runnable_tasks_less_this_processs_own_the_median_look(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    for number, state in enumerate("RSR"):  # two of this process's threads are running
        (proc / "self" / "task" / str(number)).mkdir(parents=True)
        (proc / "self" / "task" / str(number) / "stat").write_text(f"{number} (py (a) b) {state} 1 2 3\n")
    looks = iter([5, 3, 9, 4, 2])
    real_read = Path.read_text

    def read_text(path, *args, **kwargs):
        if path == proc / "stat":
            return f"cpu  1 2 3\nprocs_running {next(looks)}\nprocs_blocked 0\n"
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    assert threads.busy_elsewhere(proc, interval=0) == 2  # looks 3, 1, 7, 2, 0 others: median 2
    assert threads.busy_elsewhere(tmp_path / "no-proc", interval=0) == 0


def test_more_cpus_never_raise_torchs_pool_and_omp_num_threads_is_kept(fresh_choice, monkeypatch):
    torch = fresh_choice
    torch.set_num_threads(1)
    monkeypatch.setattr(threads, "cpu_allowance", lambda: (64.0, "affinity"))
    assert threads.choose_threads()["threads"] == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "cpu_allowance", lambda: (0.5, "cgroup quota"))
    assert threads.choose_threads()["from"] == "OMP_NUM_THREADS"


def test_loading_a_model_on_the_cpu_chooses_and_the_build_manifest_says_so(fresh_choice, tiny_llama, monkeypatch):
    from curator.build.local import LocalExecutor
    from curator.lm.loading import load_causal_lm

    fresh_choice.set_num_threads(2)
    executor = LocalExecutor()
    assert "torch_threads" not in executor.describe()
    monkeypatch.setattr(threads, "cpu_allowance", lambda: (1.0, "cgroup quota"))
    executor.models.get(("tiny",), lambda: load_causal_lm(str(tiny_llama), device="cpu"))
    assert fresh_choice.get_num_threads() == 1
    assert executor.describe()["torch_threads"] == {"threads": 1, "from": "cgroup quota (1 CPU)", "cpus": 1.0,
                                                    "busy_elsewhere": 0}
    assert "torch_threads" not in LocalExecutor().describe()  # a later build in this process that loads no model
