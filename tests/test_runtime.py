"""CPU threads from the cores a process may really use, and passive OpenMP waiting."""

import os
import subprocess
import sys

import pytest

from segue import runtime


@pytest.mark.parametrize(("text", "cores"), [
    ("max 100000\n", None),
    ("150000 100000\n", 2),
    ("100000 100000\n", 1),
    ("50000 100000\n", 1),
    ("400000 100000\n", 4),
])
def test_cgroup_v2_quota(tmp_path, text, cores):
    (tmp_path / "cpu.max").write_text(text)
    missing = (tmp_path / "no_quota", tmp_path / "no_period")
    assert runtime._cgroup_cores(tmp_path / "cpu.max", missing) == cores


def test_cgroup_v1_quota_and_no_cgroup(tmp_path):
    quota, period = tmp_path / "cfs_quota_us", tmp_path / "cfs_period_us"
    quota.write_text("300000\n")
    period.write_text("100000\n")
    assert runtime._cgroup_cores(tmp_path / "none", (quota, period)) == 3
    quota.write_text("-1\n")  # no limit
    assert runtime._cgroup_cores(tmp_path / "none", (quota, period)) is None
    assert runtime._cgroup_cores(tmp_path / "none", (tmp_path / "a", tmp_path / "b")) is None


def test_available_cores_is_the_smaller_of_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(runtime, "_cgroup_cores", lambda: None)
    assert runtime.available_cores() == 4
    monkeypatch.setattr(runtime, "_cgroup_cores", lambda: 2)
    assert runtime.available_cores() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert runtime.available_cores() == 1


def test_configure_cpu_keeps_what_the_environment_says(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    runtime.configure_cpu()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE" and os.environ["OMP_NUM_THREADS"] == "7"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(runtime, "available_cores", lambda: 3)
    runtime.configure_cpu()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["OMP_NUM_THREADS"] == "3"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_a_process_pinned_to_one_core_gets_one_torch_thread():
    """The command's set-up, in a fresh process that `taskset` would pin to one core."""
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
        "from segue.runtime import configure_cpu; configure_cpu();"
        "import torch; print(torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out == ["1", "PASSIVE"]


@pytest.mark.parametrize(("flags", "native"), [
    ("fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni", True),
    ("fpu sse2 avx2 amx_bf16 amx_tile", True),
    ("fpu sse2 avx2 avx512f avx512bw", False),  # bf16 only emulated
])
def test_native_bf16_from_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert runtime.cpu_has_native_bf16(cpuinfo) is native
    assert runtime.cpu_has_native_bf16(tmp_path / "missing") is False
