"""CPU threads and device slots (bench/threads.py, bench/launch.py, bench/packing.py): what each
--jobs worker is given, --jobs auto, --runs-per-device on fake GPUs, and what a run records.
No timing: the mechanisms only (tools/throughput.py measures them on an idle machine)."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.config import OptionError, RunConfig
from bench.launch import WorkerPlan, local_jobs, plan_workers, worker_pool
from bench.packing import MEMORY_HEADROOM, PROCESS_OVERHEAD_BYTES, runs_per_device
from bench.threads import auto_jobs, malloc_mode, resolve_jobs, run_threads, slots, threads_per_job, usable_cores

ROOT = Path(__file__).resolve().parents[1]
GiB = 1 << 30


def _report() -> dict:
    """What a worker process sees (runs in the worker)."""
    import torch

    from bench.threads import worker_device

    return {"omp": os.environ.get("OMP_NUM_THREADS"), "mkl": os.environ.get("MKL_NUM_THREADS"),
            "intra": torch.get_num_threads(), "inter": torch.get_num_interop_threads(),
            "device": worker_device("auto"), "pid": os.getpid()}


def test_each_worker_gets_its_thread_share_and_device():
    plan = WorkerPlan(devices=["cpu", "cpu"], threads=3, runs_per_device=1)
    with worker_pool(plan) as pool:
        seen = [f.result() for f in [pool.submit(_report) for _ in range(4)]]
    for r in seen:
        assert (r["omp"], r["mkl"], r["intra"], r["inter"], r["device"]) == ("3", "3", 3, 3, "cpu"), r
    assert os.environ.get("MSABENCH_WORKER_DEVICE") is None  # the parent's environment is untouched


def test_worker_initializer_is_unpickled_without_torch():
    """A spawned worker unpickles its initializer (bench.threads.init_worker, wrapped by
    bench.plugins.WithPlugins) before it runs it: that must not import torch, or OpenMP would
    have read OMP_NUM_THREADS before the initializer sets it."""
    from bench.plugins import WithPlugins
    from bench.threads import init_worker

    code = ("import pickle, sys; pickle.loads(sys.stdin.buffer.read()); "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(WithPlugins(init_worker)),
                         capture_output=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert out.stdout.decode().strip() == "[]", out.stderr.decode()[-2000:]


@pytest.mark.parametrize("jobs,cores,threads", [(1, 16, 16), (4, 16, 4), (3, 16, 5), (4, 2, 1), (2, 1, 1)])
def test_threads_per_job(jobs, cores, threads):
    assert threads_per_job(jobs, cores) == threads


def test_run_threads_follow_affinity_or_omp_num_threads(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5, 7}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert usable_cores() == 3 and run_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert run_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")  # not a count: the cores
    assert run_threads() == 3


@pytest.mark.parametrize("runs,cores,gpu_slots,want", [
    (10, 16, 0, 10), (10, 2, 0, 2), (2, 64, 0, 2), (10, 1, 0, 1), (10, 16, 6, 6), (3, 16, 6, 3), (0, 16, 0, 1),
])
def test_auto_jobs_rule(runs, cores, gpu_slots, want):
    assert auto_jobs(runs, cores, gpu_slots) == want


def test_jobs_never_exceed_the_runs():
    assert resolve_jobs(8, 3, 16) == 3 and resolve_jobs(2, 10, 16) == 2 and resolve_jobs("auto", 10, 4) == 4


def test_slots_round_robin_over_fake_gpus():
    assert slots(4, "auto", 2, 2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert slots(3, "cuda", 3, 1) == ["cuda:0", "cuda:1", "cuda:2"]
    assert slots(2, "auto", 0, 3) == ["cpu", "cpu"]  # no GPU: CPU workers
    assert slots(2, "cuda:1", 4, 1) == ["cuda:1", "cuda:1"]  # a named device is every worker's
    with pytest.raises(OptionError, match="--runs-per-device"):
        slots(5, "auto", 2, 2)


def _todo(n: int) -> list[RunConfig]:
    return [RunConfig(model="late_fusion", seed=1111 + i) for i in range(n)]


def test_plan_workers_packs_fake_gpus_from_the_probe():
    asked = []

    def probe(todo, gpus):
        asked.append((len(todo), gpus))
        return {"runs_per_device": 3, "probes": []}

    plan = plan_workers(_todo(10), "auto", "auto", gpus=2, cores=16, probe=probe)
    assert asked == [(10, 2)]
    assert plan.devices == ["cuda:0", "cuda:1"] * 3 and plan.threads == 2 and plan.runs_per_device == 3
    assert plan_workers(_todo(4), "auto", "auto", 2, 16, probe).devices == ["cuda:0", "cuda:1"] * 2
    # a given K: no probe; on CPU: no probe either, K does not apply
    plan = plan_workers(_todo(10), "auto", 2, gpus=2, cores=16, probe=probe)
    assert plan.devices == ["cuda:0", "cuda:1"] * 2 and plan.threads == 4
    plan = plan_workers(_todo(10), 3, "auto", gpus=0, cores=16, probe=probe)
    assert plan.devices == ["cpu"] * 3 and plan.threads == 5 and len(asked) == 2
    with pytest.raises(OptionError, match="needs 5 device slots"):
        plan_workers(_todo(10), 5, 2, gpus=2, cores=16, probe=probe)


def test_runs_per_device_from_peak_memory():
    budget = int(80 * GiB * MEMORY_HEADROOM)
    assert runs_per_device([3 * GiB, 5 * GiB], 80 * GiB, 100) == budget // (5 * GiB + PROCESS_OVERHEAD_BYTES)
    assert runs_per_device([3 * GiB], 80 * GiB, 4) == 4  # capped: no more slots than runs per GPU
    assert runs_per_device([100 * GiB], 80 * GiB, 8) == 1  # too big: one per device, its OOM is explained


def test_jobs_auto_on_cpu_resolves_before_planning(tmp_path, monkeypatch):
    import bench.launch

    runs = [RunConfig(model="late_fusion", seed=s, out_dir=str(tmp_path)) for s in (1, 2, 3)]
    monkeypatch.setattr(bench.launch, "usable_cores", lambda: 12)
    assert local_jobs(runs, "auto", force=False) == 3 and local_jobs(runs, 1, force=False) == 1
    monkeypatch.setattr(bench.launch, "is_complete", lambda p: p == runs[0].result_path())  # one finished
    assert local_jobs(runs, "auto", force=False) == 2 and local_jobs(runs, "auto", force=True) == 3
    monkeypatch.setattr(bench.launch, "usable_cores", lambda: 1)
    assert local_jobs(runs, "auto", force=False) == 1  # 1 core: one job, in this process


def test_the_default_is_jobs_auto_unless_msabench_jobs_says_otherwise(monkeypatch):
    """The measured faster setting (reports/perf/throughput.md) is the default: --jobs auto."""
    import argparse

    from bench.cli.run import add_run_options

    def default_jobs():
        p = argparse.ArgumentParser()
        add_run_options(p)
        return p.parse_args([]).jobs

    monkeypatch.delenv("MSABENCH_JOBS", raising=False)
    assert default_jobs() == "auto"
    monkeypatch.setenv("MSABENCH_JOBS", "3")
    assert default_jobs() == 3


def test_a_run_uses_and_records_its_cores_not_torchs_guess(tmp_path, monkeypatch):
    from bench.results import load_result
    from bench.runner import run_sweep

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)  # this process may use 1 core
    caller = torch.get_num_threads()
    torch.set_num_threads(2)  # what torch would guess on a 2-core machine: the run must not keep it
    try:
        run = RunConfig(model="late_fusion", out_dir=str(tmp_path), epochs=1, contributions=False, robustness=False)
        assert not run_sweep([run]).failed
        assert torch.get_num_threads() == 2  # restored after the run (process_state_restored)
    finally:
        torch.set_num_threads(caller)
    rec = load_result(run.result_path())
    assert rec["threads"]["intra_op"] == 1 and rec["threads"]["cores"] == 1
    assert rec["threads"]["malloc"] == malloc_mode()


def test_a_perf_session_times_on_the_cores_it_may_use(monkeypatch):
    from bench.perf import Session

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        session = Session("late_fusion", "mosi", batch=4, steps=5, warmup=0, device_name="cpu")
        session.step()
        assert torch.get_num_threads() == 1  # the session's process is its own: it keeps its threads
    finally:
        torch.set_num_threads(caller)


_FAULTS = """
import resource, torch
from bench.threads import keep_freed_memory
kept = keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():  # a training step's pattern: the same tensors allocated, written and freed every step
    xs = [torch.empty(mib << 18).fill_(1) for mib in (1, 8, 24, 40, 96)]
    del xs
for _ in range(6):  # the heap settles to the step's layout
    step()
before = faults()
for _ in range(3):
    step()
print(kept, faults() - before)
"""


@pytest.mark.skipif(malloc_mode() == "not glibc", reason="glibc's malloc settings only")
@pytest.mark.parametrize("setting", ["kept", "system"])
def test_a_run_process_keeps_the_memory_it_frees(setting):
    """A run's process (`apply_threads` -> `keep_freed_memory`) reuses freed memory instead of
    paging it in again: once the heap has settled, steps that allocate, write and free the same
    169 MiB of tensors cost no page faults; with MSABENCH_MALLOC=system the blocks above glibc's
    threshold are mapped afresh every step (96 MiB at least: 24,576 faults of 4 KiB per step)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MSABENCH_MALLOC", None)
    if setting == "system":
        env["MSABENCH_MALLOC"] = "system"
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    kept, faults = out[-2] == "True", int(out[-1])
    if setting == "kept":
        assert kept and faults < 1000
    else:
        assert not kept and faults >= 3 * (96 << 20) // 4096 // 2  # half the 96 MiB block's pages, at least


def test_a_misspelt_malloc_setting_is_an_error_that_names_it(monkeypatch):
    monkeypatch.setenv("MSABENCH_MALLOC", "sytem")
    with pytest.raises(ValueError, match="MSABENCH_MALLOC='sytem': expected 'system'"):
        malloc_mode()
    monkeypatch.setenv("MSABENCH_MALLOC", "Kept")
    assert malloc_mode() in ("kept", "not glibc")
