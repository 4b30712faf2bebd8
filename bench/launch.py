"""Launchers: where the runs of a sweep execute.

- `local`, jobs=1: one after another in this process (`bench.runner.run_sweep`).
- `local`, jobs=N: N worker processes side by side on one machine, one device each
  (cuda:0..N-1 when GPUs are visible, else CPU threads split between workers).
- `submitit`: every unfinished (dataset, model, seed) becomes one job of an existing
  scheduler (Slurm through submitit; `cluster="local"` runs jobs as local processes, as the
  tests do). Result files are the only coordination point: they are written atomically and
  a resubmitted sweep submits only what is missing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from bench.config import OptionError, RunConfig
from bench.logs import LOGGER, in_worker
from bench.plugins import WithPlugins
from bench.results import is_complete, load_result
from bench.runner import SweepSummary, check_out_dirs, check_sweep, load_sweep_data, plan_runs, run_sweep

_WORKER_DEVICE: Optional[str] = None  # set in each --jobs worker process
logger = logging.getLogger(__name__)


@dataclass
class SlurmOptions:
    folder: str = "results/.submitit"  # job logs and pickles
    cluster: Optional[str] = None  # None: Slurm if available, else local processes; "local" | "slurm" | "debug"
    partition: Optional[str] = None
    gpus_per_job: int = 0
    cpus_per_job: int = 4
    mem_gb: Optional[int] = None
    time_min: int = 240
    array_parallelism: int = 64
    wait: bool = True


def run_one(run: RunConfig, force: bool = False) -> str:
    """One run in a fresh process (a cluster job or a --jobs worker). Returns its status."""
    run = dataclasses.replace(run, device=worker_device(run.device))
    in_worker()
    summary = run_sweep([run], force=force, progress=False)
    return "error" if summary.failed else ("skipped" if summary.skipped else "ok")


def worker_device(requested: str) -> str:
    """`requested`, or this --jobs worker's own device where `requested` is auto."""
    return _WORKER_DEVICE if requested == "auto" and _WORKER_DEVICE is not None else requested


def _init_worker(devices, threads: int, log_level: int = logging.INFO) -> None:
    global _WORKER_DEVICE
    _WORKER_DEVICE = devices.get()
    in_worker(log_level)  # the worker's lines reach the terminal as the parent's do
    import torch

    torch.set_num_threads(threads)


def summarize(runs: list[RunConfig], skipped: list[str]) -> SweepSummary:
    """Read each run's result file back: the files, not the workers, say what happened."""
    summary = SweepSummary(skipped=list(skipped))
    for run in runs:
        label = f"{run.dataset}/{run.run_name}/seed{run.seed}"
        if label in summary.skipped:
            continue
        path = run.result_path()
        if is_complete(path):
            summary.ok.append(label)
        elif path.exists():
            summary.failed.append((label, load_result(path).get("error", {}).get("message", "error")))
        else:
            summary.failed.append((label, "no result file (job killed or still running)"))
    return summary


def launch(
    runs: list[RunConfig], *, launcher: str = "local", jobs: int = 1, force: bool = False,
    progress: bool = False, slurm: Optional[SlurmOptions] = None,
) -> SweepSummary:
    if launcher not in ("local", "submitit"):
        raise OptionError(f"--launcher '{launcher}': unknown launcher (local | submitit)")
    if jobs < 1:
        raise OptionError(f"--jobs {jobs}: give at least 1")
    if launcher == "local" and jobs <= 1:
        return run_sweep(runs, force=force, progress=progress)
    planned = plan_runs(runs)  # unknown models / config keys / bad values fail here, before anything is started
    finished = [not force and is_complete(p.run.result_path()) for p in planned]
    todo_planned = [p for p, done in zip(planned, finished, strict=True) if not done]
    todo = [p.run for p in todo_planned]
    skipped = [p.label for p, done in zip(planned, finished, strict=True) if done]
    for label in skipped:
        logger.info(f"skip {label}: finished; --force reruns it")
    if todo_planned:
        # what would fail every job the same way fails once, here (a scheduler's nodes may have
        # devices this machine lacks: only the device's form is checked for submitit)
        check_sweep(todo_planned, local=launcher == "local")
        load_sweep_data(todo_planned)
        check_out_dirs(todo_planned)
    if launcher == "local":
        _run_parallel(todo, jobs, force)
    elif launcher == "submitit":
        jobs_submitted = submit(todo, slurm or SlurmOptions(), force)
        if not (slurm or SlurmOptions()).wait:
            logger.info(f"submitted {len(jobs_submitted)} jobs; rerun the same command to collect/resubmit what is missing")
            return SweepSummary(skipped=skipped)
    else:
        raise OptionError(f"unknown launcher '{launcher}' (local | submitit)")
    return summarize(runs, skipped)


def _devices(n: int, requested: str) -> list[str]:
    import torch

    if requested not in ("auto", "cuda") or not torch.cuda.is_available():
        return [requested if requested != "auto" else "cpu"] * n
    count = torch.cuda.device_count()
    if n > count:
        raise OptionError(f"--jobs {n} asks for one GPU per job, but {count} are visible")
    return [f"cuda:{i}" for i in range(n)]


def worker_pool(n: int, requested: str) -> ProcessPoolExecutor:
    """`n` spawned worker processes, one device each (see `_devices`), the CPU threads shared out."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fresh interpreters: no forked CUDA or thread state
    devices = ctx.Queue()
    for d in _devices(n, requested):
        devices.put(d)
    threads = max(1, (os.cpu_count() or 1) // n)
    return ProcessPoolExecutor(n, mp_context=ctx, initializer=WithPlugins(_init_worker),
                               initargs=(devices, threads, worker_log_level()))


def _run_parallel(todo: list[RunConfig], jobs: int, force: bool) -> None:
    if not todo:
        return
    with worker_pool(jobs, todo[0].device) as pool:
        futures = {pool.submit(run_one, r, force): r for r in todo}
        try:
            for fut in as_completed(futures):
                r = futures[fut]
                try:
                    logger.info(f"finished {r.dataset}/{r.run_name}/seed{r.seed}: {fut.result()}")
                except Exception as err:  # a crashed worker: the run has no result file
                    logger.error(f"worker failed on {r.dataset}/{r.run_name}/seed{r.seed}: {err}")
        except KeyboardInterrupt:
            stop_pool(pool)
            raise


def worker_log_level() -> int:
    """The level this process logs at, for the workers it starts."""
    return logging.getLogger(LOGGER).getEffectiveLevel()


def stop_pool(pool) -> None:
    """Ctrl-C: end the workers now (their runs in progress are not recorded), so leaving the
    pool does not wait for them to finish a run or to unload torch. A signal sent to this
    process alone does not reach them; a terminal's Ctrl-C does, but their teardown is slow."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # Python < 3.14: no terminate_workers()
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in workers:
        proc.terminate()


def _submitit():
    try:
        import submitit
    except ImportError:
        raise RuntimeError("--launcher submitit needs submitit: pip install 'msabench[cluster]'") from None
    return submitit


def executor_for(opts: SlurmOptions, name: str, folder: Optional[str] = None, array: bool = False):
    """A submitit AutoExecutor with these options (`bench run` and `bench tune` jobs alike);
    `folder` overrides `<opts.folder>/%j`, `array` adds the Slurm array parallelism."""
    executor = _submitit().AutoExecutor(folder=folder or str(Path(opts.folder) / "%j"), cluster=opts.cluster)
    params: dict[str, Any] = dict(timeout_min=opts.time_min, cpus_per_task=opts.cpus_per_job, name=name)
    if opts.gpus_per_job:
        params["gpus_per_node"] = opts.gpus_per_job
    if opts.mem_gb:
        params["mem_gb"] = opts.mem_gb
    if executor.cluster == "slurm":
        if array:
            params["slurm_array_parallelism"] = opts.array_parallelism
        if opts.partition:
            params["slurm_partition"] = opts.partition
    executor.update_parameters(**params)
    return executor


def submit(todo: list[RunConfig], opts: SlurmOptions, force: bool) -> list:
    """One scheduler job per run (a job array). Returns the submitit jobs."""
    _submitit()
    if not todo:
        return []
    executor = executor_for(opts, "msabench", array=True)
    jobs = executor.map_array(WithPlugins(run_one), todo, [force] * len(todo))
    logger.info(f"submitted {len(jobs)} job(s) to {executor.cluster} (logs: {opts.folder})")
    if opts.wait:
        for job, run in zip(jobs, todo, strict=True):
            try:
                status = job.result()
            except Exception as err:  # killed/cancelled/failed job: no result file, reported below
                status = f"job failed: {type(err).__name__}"
            logger.info(f"job {job.job_id} {run.dataset}/{run.run_name}/seed{run.seed}: {status}")
    return jobs
