"""Launchers: where the runs of a sweep execute.

- `local`, jobs=1: one after another in this process (`bench.runner.run_sweep`).
- `local`, jobs=N (or auto): N worker processes side by side on one machine, each with
  `cores // N` CPU threads; with GPUs, `--runs-per-device` K workers share each GPU (auto: K
  from a probe of each run's peak memory, bench.packing). See bench.threads for the rules.
- `submitit`: every unfinished (dataset, model, seed) becomes one job of an existing
  scheduler (Slurm through submitit; `cluster="local"` runs jobs as local processes, as the
  tests do). Result files are the only coordination point: they are written atomically and
  a resubmitted sweep submits only what is missing.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from bench.config import OptionError, RunConfig
from bench.logs import LOGGER, in_worker
from bench.plugins import WithPlugins
from bench.results import is_complete, load_result
from bench.runner import SweepSummary, check_out_dirs, check_sweep, load_sweep_data, plan_runs, run_sweep
from bench.threads import (
    Jobs, auto_jobs, init_worker, resolve_jobs, slots, threads_per_job, usable_cores, worker_device,
)

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
        else:
            summary.failed.append((label, load_result(path).get("error", {}).get("message", "error") if path.exists()
                                   else "no result file (job killed or still running)"))
    return summary


def launch(
    runs: list[RunConfig], *, launcher: str = "local", jobs: Jobs = 1, runs_per_device: Jobs = 1,
    force: bool = False, progress: bool = False, slurm: Optional[SlurmOptions] = None,
) -> SweepSummary:
    """Run `runs` with `launcher`: `jobs` worker processes side by side (an integer or "auto",
    bench.threads), `runs_per_device` of them per GPU (an integer or "auto": from a memory probe)."""
    if launcher not in ("local", "submitit"):
        raise OptionError(f"--launcher '{launcher}': unknown launcher (local | submitit)")
    for option, value in (("--jobs", jobs), ("--runs-per-device", runs_per_device)):
        if value != "auto" and (not isinstance(value, int) or value < 1):
            raise OptionError(f"{option} {value}: give an integer >= 1 or auto")
    if launcher == "local" and local_jobs(runs, jobs, force) == 1:
        return run_sweep(runs, force=force, progress=progress)
    planned = plan_runs(runs)  # unknown models / config keys / bad values fail here, before anything is started
    finished = [not force and is_complete(p.run.result_path()) for p in planned]
    todo_planned = [p for p, done in zip(planned, finished, strict=True) if not done]
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
        _run_parallel([p.run for p in todo_planned], jobs, runs_per_device, force)
    else:
        jobs_submitted = submit([p.run for p in todo_planned], slurm or SlurmOptions(), force)
        if not (slurm or SlurmOptions()).wait:
            logger.info(f"submitted {len(jobs_submitted)} jobs; rerun the same command to collect/resubmit what is missing")
            return SweepSummary(skipped=skipped)
    return summarize(runs, skipped)


def local_jobs(runs: list[RunConfig], jobs: Jobs, force: bool) -> Jobs:
    """`jobs`, with `auto` resolved here where no GPU takes part (on GPUs it waits for the
    memory probe): 1 means the runs go one after another in this process."""
    if jobs != "auto" or (runs and visible_gpus(runs[0].device)):
        return jobs
    todo = sum(force or not is_complete(r.result_path()) for r in runs)
    return auto_jobs(todo, usable_cores())


def visible_gpus(requested: str) -> int:
    """The GPUs --jobs workers spread over: those torch sees, where the device is auto or cuda."""
    import torch

    return torch.cuda.device_count() if requested in ("auto", "cuda") and torch.cuda.is_available() else 0


@dataclass
class WorkerPlan:
    """How a local sweep runs: `devices[i]` is worker i's device; each has `threads` CPU threads."""
    devices: list[str]
    threads: int
    runs_per_device: int
    probe: Optional[dict[str, Any]] = None  # the memory probe behind runs_per_device=auto


def plan_workers(todo: list[RunConfig], jobs: Jobs, runs_per_device: Jobs, gpus: int, cores: int,
                 probe: Callable[[list[RunConfig], int], dict[str, Any]]) -> WorkerPlan:
    """The worker processes for `todo` (no process is started): `runs_per_device` auto asks
    `probe(todo, gpus)` (bench.packing.probe_sweep on a real GPU) for its `runs_per_device`."""
    measured = probe(todo, gpus) if runs_per_device == "auto" and gpus else None
    per_device = int(measured["runs_per_device"]) if measured else (1 if runs_per_device == "auto" else int(runs_per_device))
    n = resolve_jobs(jobs, len(todo), cores, gpus * per_device)
    devices = slots(n, todo[0].device, gpus, per_device)
    return WorkerPlan(devices, threads_per_job(n, cores), per_device, measured)


def worker_pool(plan: WorkerPlan | int, requested: str = "auto") -> ProcessPoolExecutor:
    """One spawned worker process per device of `plan` (an integer n: n workers, one per GPU
    where GPUs are visible, else on CPU), each with `plan.threads` threads (bench.threads)."""
    import multiprocessing as mp

    if isinstance(plan, int):
        gpus = visible_gpus(requested)
        plan = WorkerPlan(slots(plan, requested, gpus, 1), threads_per_job(plan), 1)
    ctx = mp.get_context("spawn")  # fresh interpreters: no forked CUDA or thread state
    devices = ctx.Queue()
    for d in plan.devices:
        devices.put(d)
    return ProcessPoolExecutor(len(plan.devices), mp_context=ctx, initializer=WithPlugins(init_worker),
                               initargs=(devices, plan.threads, logging.getLogger(LOGGER).getEffectiveLevel()))


def _run_parallel(todo: list[RunConfig], jobs: Jobs, runs_per_device: Jobs, force: bool) -> None:
    if not todo:
        return
    from bench.packing import probe_sweep

    plan = plan_workers(todo, jobs, runs_per_device, visible_gpus(todo[0].device), usable_cores(), probe_sweep)
    logger.info(f"{len(plan.devices)} worker processes ({', '.join(plan.devices)}), "
                f"{plan.threads} CPU thread(s) each")
    with worker_pool(plan) as pool:
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
    slurm = executor.cluster == "slurm"
    optional = (("gpus_per_node", opts.gpus_per_job, opts.gpus_per_job), ("mem_gb", opts.mem_gb, opts.mem_gb),
                ("slurm_array_parallelism", opts.array_parallelism, slurm and array),
                ("slurm_partition", opts.partition, slurm and opts.partition))  # (parameter, value, given when)
    executor.update_parameters(timeout_min=opts.time_min, cpus_per_task=opts.cpus_per_job, name=name,
                               **{key: value for key, value, given in optional if given})
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
