"""CPU threads and device slots for runs: how many threads a run uses, how many runs go side
by side (`--jobs`, `--runs-per-device`), and which device each worker process gets.

Rules (README "Sweeps and clusters"):
- A run uses the cores this process may run on (`os.sched_getaffinity`, which honours
  `taskset`, cgroup cpusets and Slurm's binding), not torch's guess (the machine's physical
  cores); `OMP_NUM_THREADS`, when set, wins.
- `--jobs N` on one machine gives each of its N worker processes `cores // N` threads (at
  least 1): torch intra-op and inter-op threads, and `OMP_NUM_THREADS`/`MKL_NUM_THREADS` in the
  worker's environment, set before the worker imports torch (OpenMP reads them once, when it loads).
- `--jobs auto` (the default; `MSABENCH_JOBS` changes it): with GPUs, one worker per device
  slot (visible GPUs x `--runs-per-device`); on CPU, one worker per `CPU_CORES_PER_JOB` cores
  (at least 1). Never more workers than runs; one worker means the runs go one after another in
  this process.
- A run's process keeps the memory it frees (`keep_freed_memory`, glibc only; `MSABENCH_MALLOC=system`
  turns it off): by default glibc hands large freed blocks back to the kernel, and every
  training step then pays a page fault for each 4 KiB it allocates again (measured on this
  project's 2-core VM: 76,000-197,000 faults per BERT floor step, 101,000-308,000 per MSAmba
  step; none with the setting, once the heap has settled after the first steps).

This module imports torch only inside functions: the worker initializer sets the environment
before anything imports torch in a fresh worker process.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys
from typing import Any, Optional, Union

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# measured (reports/perf/throughput.md): the main command on an idle 2-core machine took 238.6-248.5 s as
# two single-thread workers and 319.7-341.9 s as one run after another on both cores; the models'
# batch-32 steps are small matrices that one thread keeps busy. Measured on 2 cores only.
CPU_CORES_PER_JOB = 1
JOBS_ENV = "MSABENCH_JOBS"  # the default of --jobs (an integer or auto) where set
MALLOC_ENV = "MSABENCH_MALLOC"  # "system": leave glibc's malloc settings as they are
# glibc mallopt parameters: every block comes from the heap (no mmap, so none is unmapped when freed:
# BERT's 94 MB embedding gradient and Adam's temporaries were), the heap's free top is never handed
# back, and the threshold stays where it is set (glibc would otherwise move it)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
MALLOC_SETTINGS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 2 ** 31 - 1, M_MMAP_MAX: 0}

Jobs = Union[int, str]  # an integer >= 1 or "auto"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), or os.cpu_count() where the
    platform has no affinity (macOS, Windows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def env_threads() -> Optional[int]:
    """OMP_NUM_THREADS as a positive integer, or None when unset or not one."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def run_threads() -> int:
    """The intra-op threads a run uses: OMP_NUM_THREADS when set (a --jobs worker sets it),
    else every usable core."""
    return env_threads() or usable_cores()


def threads_per_job(jobs: int, cores: Optional[int] = None) -> int:
    """`cores // jobs`, at least 1."""
    return max(1, (cores or usable_cores()) // max(1, jobs))


def auto_jobs(runs: int, cores: int, device_slots: int = 0) -> int:
    """`--jobs auto`: one worker per device slot with GPUs, else one per CPU_CORES_PER_JOB cores;
    never more than `runs`, at least 1."""
    want = device_slots if device_slots > 0 else cores // CPU_CORES_PER_JOB
    return max(1, min(runs, want))


def resolve_jobs(jobs: Jobs, runs: int, cores: int, device_slots: int = 0) -> int:
    """The number of worker processes: `auto` by `auto_jobs`, an integer capped at `runs`
    (an idle worker would only take threads from the others)."""
    n = auto_jobs(runs, cores, device_slots) if jobs == "auto" else int(jobs)
    return max(1, min(n, max(1, runs)))


def slots(jobs: int, requested: str, gpus: int, per_device: int) -> list[str]:
    """The device of each of `jobs` workers. CPU (or no GPU visible): `requested` (auto -> cpu)
    for all. GPUs: round-robin over cuda:0..gpus-1, at most `per_device` workers each."""
    if requested not in ("auto", "cuda") or gpus == 0:
        return [requested if requested != "auto" else "cpu"] * jobs
    if jobs > gpus * per_device:
        from bench.config import OptionError

        raise OptionError(f"--jobs {jobs} needs {jobs} device slots, but {gpus} GPU(s) x --runs-per-device "
                          f"{per_device} give {gpus * per_device}; raise --runs-per-device or lower --jobs")
    return [f"cuda:{i % gpus}" for i in range(jobs)]


def set_thread_env(threads: int) -> None:
    """THREAD_ENV in this process's environment (and so in the processes it starts)."""
    os.environ.update({k: str(threads) for k in THREAD_ENV})


@functools.lru_cache(maxsize=1)
def _glibc() -> bool:
    """Whether this process runs on glibc (`os.confstr`: no file read, unlike `platform.libc_ver`)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows) or no such name (macOS, musl)
        return False


def malloc_mode() -> str:
    """"kept" (a run's process keeps the memory it frees: `keep_freed_memory`; MSABENCH_MALLOC unset
    or "kept"), "system" (glibc's defaults: MSABENCH_MALLOC=system) or "not glibc" (nothing to
    set). Any other MSABENCH_MALLOC is an error that names it."""
    value = os.environ.get(MALLOC_ENV, "").strip().lower()
    if value not in ("", "kept", "system"):
        raise ValueError(f"{MALLOC_ENV}={os.environ[MALLOC_ENV]!r}: expected 'system' (glibc's own malloc settings) "
                         "or 'kept' (the default: a run's process keeps the memory it frees), or unset")
    if not _glibc():
        return "not glibc"
    return "system" if value == "system" else "kept"


def keep_freed_memory() -> bool:
    """glibc's malloc keeps freed memory for the next allocation instead of returning it to the
    kernel (MALLOC_SETTINGS): a training step allocates the same tensors every step, and memory
    that was handed back is paged in again (a fault per 4 KiB) on first use. Results are
    unchanged; only where memory comes from. False (nothing changed) unless `malloc_mode()` is
    "kept". The process's memory then stays at its peak until it exits."""
    if malloc_mode() != "kept":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in MALLOC_SETTINGS.items())


def apply_threads(threads: int) -> None:
    """torch intra-op threads, and inter-op threads where torch still allows it (only before
    any inter-op work has started in this process); and `keep_freed_memory`."""
    import torch

    keep_freed_memory()

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # parallel work already ran in this process: it keeps its pool
            logging.getLogger(__name__).debug("inter-op threads stay at %d", torch.get_num_interop_threads())


def thread_record() -> dict[str, Any]:
    """What a result file records: the threads the run used, the cores it could use, and whether
    its process kept the memory it freed (`malloc_mode`; its train time depends on it)."""
    import torch

    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads(),
            "cores": usable_cores(), **{k.lower(): os.environ.get(k) for k in THREAD_ENV}, "malloc": malloc_mode()}


def init_worker(devices, threads: int, log_level: int = logging.INFO) -> None:
    """A --jobs worker process's initializer: the thread environment first (this module is
    torch-free, so torch has not been imported yet in a fresh spawned worker), then its device
    and log level, then torch's thread pools."""
    set_thread_env(threads)
    torch_first = "torch" in sys.modules
    from bench.logs import in_worker

    os.environ["MSABENCH_WORKER_DEVICE"] = devices.get()
    in_worker(log_level)  # the worker's lines reach the terminal as the parent's do
    apply_threads(threads)
    if torch_first:
        logging.getLogger(__name__).warning("torch was imported before the worker's thread environment was set")


def worker_device(requested: str) -> str:
    """`requested`, or this --jobs worker's own device where `requested` is auto."""
    own = os.environ.get("MSABENCH_WORKER_DEVICE")
    return own if requested == "auto" and own else requested
