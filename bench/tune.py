"""`bench tune`: the same hyperparameter-search budget for every model, on validation only
built on Optuna: its samplers (TPE, random), pruner (median), study storage
(SQLite, or its journal file when trials run as cluster jobs) and heartbeat.

Per (dataset, model) one study, named after the tuned run (`synthetic/late_fusion+tuned`):
  resolve the model's search space (declared next to its presets, else the registry's
  default) -> open or create the study (the budget and everything the objective depends on
  are its user attrs; a rerun with another objective is refused) -> fail the trials of
  workers that died -> run workers until the finished trials (complete + pruned) reach the
  budget -> run the best configuration with the final seeds (1111-1115) through the normal
  runner into `<out>/<dataset>/<model>+tuned/`.
A trial trains with the harness trainer (`train_and_test(test=False)`: the test split is
never evaluated) under a seed no final run uses (`TuneSpec.training_seed`, recorded per
trial) and returns the preset's validation selection metric at its best epoch; every
validated epoch reports that metric to the pruner (`on_epoch`). A failed trial (an
exception) is recorded as failed and does not count towards the budget.

Killed workers: with SQLite, Optuna's heartbeat fails a trial whose worker stopped beating
and `RetryHeartbeatStaleTrialCallback` queues it again. Optuna's journal storage has no
heartbeat, so each trial records its worker (host, pid, job id) and the driver fails and
requeues, with the same callback, a running trial whose worker is gone: a dead pid on this
host or a finished job of this driver. One driver per study at a time (harness decision).
Budget in hours: the summed duration of the study's trials (worker-hours), so K workers
spend it K times faster and every model gets the same compute.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import socket
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterator, Optional

from bench.config import DEFAULT_SEEDS, OptionError, RunConfig
from bench.results import write_json_atomic

OPTUNA_HINT = ('bench tune needs Optuna, an optional extra: pip install "msabench[tune]" '
               '(in a checkout: pip install -c constraints.txt optuna)')
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
LAUNCHERS = ("local", "submitit")
HEARTBEAT_S = 60  # SQLite heartbeat interval; a trial silent for GRACE_S is failed (harness decision)
GRACE_S = 180
MAX_RETRY = 2  # a killed trial is retried at most twice (harness decision)
TUNED_TAG = "tuned"
# harness decision: trials train with a seed that no reported run uses: just below MMSA's
# 1111-1115, so the winning trial is not one of the final seeds re-run (issue #23 item 6)
TRIAL_SEED = 1110

logger = logging.getLogger(__name__)


class OptunaMissing(RuntimeError):
    pass


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise OptunaMissing(OPTUNA_HINT) from None
    return optuna


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna at WARNING inside (the driver logs one line per trial), its verbosity put back after."""
    optuna = require_optuna()
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


@dataclass
class TuneSpec:
    """One study: the run template every trial and the final seeds derive from, and the budget."""

    run: RunConfig  # model, dataset, preset, epochs, text_encoder, data_root, device, out_dir, ...
    trials: Optional[int] = None  # budget: finished (complete + pruned) trials ...
    budget_hours: Optional[float] = None  # ... or worker-hours of trials
    sampler: str = "tpe"
    pruner: str = "median"
    pruner_startup_trials: int = 5  # MedianPruner: no pruning before this many finished trials
    pruner_warmup_epochs: int = 0  # MedianPruner: no pruning in a trial's first epochs
    seed: int = DEFAULT_SEEDS[0]  # sampler seed
    trial_seed: Optional[int] = None  # the seed every trial trains with; None: `training_seed` picks one
    storage: Optional[str] = None  # Optuna URL, or journal:PATH; None: a file under <out>/tuning/
    launcher: str = "local"
    workers: int = 1
    slurm: Any = None  # --launcher submitit: a bench.launch.SlurmOptions (None: its defaults)
    space: Optional[dict] = None  # {target: SearchParam}; None: the model's (tests pass their own)
    final_seeds: tuple[int, ...] = DEFAULT_SEEDS

    def __post_init__(self) -> None:
        if (self.trials is None) == (self.budget_hours is None):
            raise OptionError("give the budget as --trials N or --budget-hours H (one of them)")
        if self.trials is not None and self.trials < 1:
            raise OptionError(f"--trials {self.trials}: give at least 1")
        if self.budget_hours is not None and not self.budget_hours > 0:
            raise OptionError(f"--budget-hours {self.budget_hours}: give a positive number")
        for name, value, allowed in (("sampler", self.sampler, SAMPLERS), ("pruner", self.pruner, PRUNERS),
                                     ("launcher", self.launcher, LAUNCHERS)):
            if value not in allowed:
                raise OptionError(f"--{name} '{value}': choose {' | '.join(allowed)}")
        if self.workers < 1:
            raise OptionError(f"--workers {self.workers}: give at least 1")
        if self.trial_seed in self.final_seeds:
            raise OptionError(f"--trial-seed {self.trial_seed} is one of the final seeds "
                              f"({', '.join(map(str, self.final_seeds))}); trials must train with a seed "
                              "that is not reported")

    @property
    def training_seed(self) -> int:
        """The trials' training seed: --trial-seed, else the first of TRIAL_SEED, TRIAL_SEED - 1, ...
        that is not a final seed (never a seed the tuned row reports)."""
        return self.trial_seed if self.trial_seed is not None else next(
            s for s in range(TRIAL_SEED, TRIAL_SEED - len(self.final_seeds) - 1, -1) if s not in self.final_seeds)

    @property
    def variant(self) -> str:
        """Result-folder and study name: `mult+tuned`, `mult+paper+tuned` for a non-default --preset."""
        return "+".join([self.run.model, *([self.run.preset] if self.run.preset else []), TUNED_TAG])

    @property
    def study_name(self) -> str:
        return f"{self.run.dataset}/{self.variant}"

    @property
    def budget(self) -> dict[str, float]:
        if self.trials is not None:
            return {"trials": self.trials}
        assert self.budget_hours is not None  # __post_init__: exactly one of the two is given
        return {"hours": self.budget_hours}

    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        stem = Path(self.run.out_dir).expanduser().resolve() / "tuning" / self.run.dataset / self.variant
        # submitit: the journal is safe on a shared filesystem (file locks, append-only)
        return f"journal:{stem}.journal" if self.launcher == "submitit" else f"sqlite:///{stem}.db"


def summary_path(out_dir: str | Path, dataset: str, variant: str) -> Path:
    """`<out>/tuning/<dataset>/<variant>.json`: the study's state as `bench table --tuning` reads it."""
    return Path(out_dir) / "tuning" / dataset / f"{variant}.json"


# -- storage and study ---------------------------------------------------------------------------

def open_storage(url: str, heartbeat: bool = True):
    """SQLite / RDB URL (with Optuna's heartbeat), or `journal:PATH` (a path ending .journal works too)."""
    optuna = require_optuna()
    if url.startswith("journal:") or url.endswith(".journal"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len("journal:"):] if url.startswith("journal:") else url).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        kw: dict[str, Any] = dict(heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                  heartbeat_stale_trial_callback=_retry_callback()) if heartbeat else {}
        return optuna.storages.RDBStorage(url, **kw)


def _retry_callback():
    optuna = require_optuna()
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=MAX_RETRY)


def _sampler(spec: TuneSpec, seed: int):
    optuna = require_optuna()
    return (optuna.samplers.RandomSampler if spec.sampler == "random" else optuna.samplers.TPESampler)(seed=seed)


def _pruner(spec: TuneSpec):
    optuna = require_optuna()
    return optuna.pruners.NopPruner() if spec.pruner == "none" else optuna.pruners.MedianPruner(
        n_startup_trials=spec.pruner_startup_trials, n_warmup_steps=spec.pruner_warmup_epochs)


@dataclass
class Resolved:
    """What a study's objective depends on, resolved from the spec once."""

    model_config: Any  # the preset (with --epochs / --text-encoder) the search starts from
    space: dict  # {target: SearchParam}, relative ranges scaled by the preset
    declared: bool  # False: the registry's default space
    metric: str
    direction: str  # minimize | maximize

    def identity(self, spec: TuneSpec) -> dict[str, Any]:
        """Study user attrs that must not change when the study is continued."""
        run = spec.run
        return {"model": run.model, "dataset": run.dataset, "preset": self.model_config.preset,
                "metric": self.metric, "direction": self.direction, "epochs": self.model_config.max_epochs,
                "text_encoder": getattr(self.model_config, "text_encoder", None), "seed": spec.seed,
                "trial_seed": spec.training_seed, "space": {t: p.describe() for t, p in self.space.items()}}


def resolve(spec: TuneSpec) -> Resolved:
    from bench.runner import plan_runs
    from models.constants import METRICS
    from models.registry import check_search_space, get_model_entry, search_space_of

    base = plan_runs([spec.run])[0].model_config
    if spec.space is not None:
        check_search_space(spec.run.model, get_model_entry(spec.run.model).config_cls, spec.space, base)
        space, declared = dict(spec.space), True
    else:
        space, declared = search_space_of(spec.run.model, base)
    if not space:
        raise OptionError(f"model '{spec.run.model}' has an empty search space (declare SEARCH_SPACE next to its presets)")
    metric = base.selection_metric
    direction = "maximize" if METRICS[metric].higher_is_better else "minimize"
    return Resolved(base, absolute_space(space, base), declared, metric, direction)


def absolute_space(space: dict, cfg: Any) -> dict:
    """Relative ranges (around_preset) as absolute ones for this preset."""
    def absolute(p: Any, value: float) -> Any:
        return dataclasses.replace(p, low=value * p.low, high=value * p.high, relative=False)

    return {target: absolute(p, float(getattr(cfg, target))) if p.relative else p for target, p in space.items()}


def open_study(spec: TuneSpec, resolved: Optional[Resolved] = None, sampler_seed: Optional[int] = None,
               create: bool = True):
    """The study of `spec` (created with its identity and budget, or loaded and checked)."""
    optuna = require_optuna()
    resolved = resolved or resolve(spec)
    storage = open_storage(spec.storage_url())
    name = spec.study_name
    exists = name in {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if not exists and not create:
        raise KeyError(f"no study '{name}' in {spec.storage_url()}")
    study = optuna.create_study(storage=storage, study_name=name, direction=resolved.direction,
                                load_if_exists=True, sampler=_sampler(spec, spec.seed if sampler_seed is None else sampler_seed),
                                pruner=_pruner(spec))
    identity = resolved.identity(spec)
    if exists:
        # a study from before `trial_seed` existed trained its trials with its sampler seed
        old = {"trial_seed": study.user_attrs.get("seed"), **study.user_attrs}
        changed = [k for k, v in identity.items() if k in old and json.dumps(old[k], sort_keys=True) != json.dumps(v, sort_keys=True)]
        if changed:
            what = "; ".join(f"{k}: study {old[k]!r}, now {identity[k]!r}" for k in changed)
            raise OptionError(f"study '{name}' in {spec.storage_url()} was made with another objective ({what}); "
                             f"continue it with the same options, or start over with another --storage")
    else:
        for k, v in identity.items():
            study.set_user_attr(k, v)
    if study.user_attrs.get("budget") != spec.budget:
        study.set_user_attr("budget", spec.budget)  # a rerun may raise the total: the study keeps the latest
    return study


# -- trials --------------------------------------------------------------------------------------

def _encode(value: Any) -> Any:
    """Optuna categorical choices are scalars: a tuple choice ("d,heads") is stored as '30,6'."""
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else value


def suggest(trial, space: dict) -> dict[str, Any]:
    """{target: value} sampled by the trial (a queued trial gets its fixed values)."""
    values = {}
    for target, p in space.items():
        if p.choices is not None:
            encoded = [_encode(c) for c in p.choices]
            values[target] = p.choices[encoded.index(trial.suggest_categorical(target, encoded))]
        elif p.integer:
            values[target] = trial.suggest_int(target, int(p.low), int(p.high), log=p.log)
        else:
            values[target] = trial.suggest_float(target, p.low, p.high, log=p.log)
    return values


def worker_info() -> dict[str, Any]:
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "job": None}
    if "SUBMITIT_FOLDER" in os.environ or "SLURM_JOB_ID" in os.environ:
        with contextlib.suppress(Exception):  # not inside a submitit job after all
            import submitit

            info["job"] = str(submitit.JobEnvironment().job_id)
    return info


class Objective:
    """Train one configuration with the harness trainer; return its validation selection value."""

    def __init__(self, spec: TuneSpec, resolved: Resolved, data: Any = None):
        self.spec, self.resolved = spec, resolved
        self._data: dict[tuple, Any] = {}
        self._given = data  # an already loaded MSAData (tests); else loaded once per worker

    def run_for(self, overrides: dict[str, Any]) -> RunConfig:
        run = self.spec.run
        return dataclasses.replace(run, seed=self.spec.training_seed, overrides={**run.overrides, **overrides},
                                   contributions=False, robustness=False)

    def _data_for(self, p) -> Any:
        from bench.data.conditions import with_data_missing
        from bench.runner import check_compatible, data_key, load_sweep_data, with_data_dims

        data = self._given
        if data is None:
            key = data_key(p)
            if key not in self._data:
                self._data.update(load_sweep_data([p]))  # also fits and checks p's config
                return self._data[key]
            data = self._data[key]
        p.model_config = with_data_dims(p.model_config, data)
        check_compatible(p.model_config, data, p.run.model)
        # data passed in gets the preset's data condition here, as load_data_for gives loaded data
        return data if self._given is None else with_data_missing(data, p.model_config.data_missing)

    def __call__(self, trial) -> float:
        optuna = require_optuna()
        from bench.threads import apply_threads, run_threads, worker_device
        from bench.runner import explain_error, plan_runs
        from bench.train import process_state_restored, resolve_device, seed_everything, train_and_test
        from models.registry import apply_search_values, get_model_entry

        trial.set_user_attr("worker", worker_info())
        overrides = apply_search_values(self.resolved.model_config, suggest(trial, self.resolved.space))
        trial.set_user_attr("overrides", json.loads(json.dumps(overrides)))
        trial.set_user_attr("seed", self.spec.training_seed)
        metric = self.resolved.metric
        step = 0

        def on_epoch(record: dict) -> None:  # stages restart their epoch count: report a running step
            nonlocal step
            value = float(record["valid"][metric])
            trial.report(value, step)
            step += 1
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {record['epoch']}: valid {metric} {value:.4f}")

        p = plan_runs([self.run_for(overrides)])[0]
        try:
            data = self._data_for(p)
            run, cfg = p.run, p.model_config
            device = worker_device(run.device)
            with process_state_restored():
                apply_threads(run_threads())  # as the runner: the cores this worker may use, not torch's guess
                seed_everything(run.seed)  # before the model is built, as the runner does
                model = get_model_entry(run.model).builder(cfg)
                result = train_and_test(model, data, seed=run.seed, device=resolve_device(device), amp=run.amp,
                                        contributions=False, robustness=False, on_epoch=on_epoch, test=False,
                                        log_epochs=False)  # one line per trial, not per epoch
        except optuna.TrialPruned:
            raise
        except Exception as err:
            err = explain_error(err, p.model_config)
            trial.set_user_attr("error", f"{type(err).__name__}: {str(err)[:500]}")
            raise err
        assert "test" not in result["metrics"] and "predictions" not in result, "a trial evaluated the test split"
        value = result["selection"]["value"]
        trial.set_user_attr("best_epoch", result["best_epoch"])
        trial.set_user_attr("epochs_run", result["epochs_run"])
        trial.set_user_attr("valid", {k: v for k, v in result["metrics"]["valid"].items() if isinstance(v, (int, float))})
        if value is None or not math.isfinite(value):
            raise ValueError(f"no finite validation {metric} in any epoch")
        return float(value)


# -- budget and bookkeeping ---------------------------------------------------------------------

def counts(study) -> dict[str, int]:
    out = {"complete": 0, "pruned": 0, "fail": 0, "running": 0, "waiting": 0}  # Optuna's TrialState names
    out.update(Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False)))
    out["finished"] = out["complete"] + out["pruned"]
    return out


def spent_seconds(study) -> float:
    """Worker-seconds of every trial that ended (the hours budget)."""
    return sum((t.datetime_complete - t.datetime_start).total_seconds()
               for t in study.get_trials(deepcopy=False) if t.datetime_complete and t.datetime_start)


def remaining(spec: TuneSpec, study) -> tuple[int | None, float | None]:
    """(trials still to run, worker-seconds still to spend); 0 / <= 0 when the budget is met."""
    if spec.trials is not None:
        return max(0, spec.trials - counts(study)["finished"]), None
    assert spec.budget_hours is not None  # TuneSpec: exactly one of trials / budget_hours
    return None, spec.budget_hours * 3600 - spent_seconds(study)


def _alive(worker: dict, finished_jobs: set[str]) -> bool:
    if worker.get("job") is not None and str(worker["job"]) in finished_jobs:
        return False
    if worker.get("host") != socket.gethostname():
        return True  # another machine: only its heartbeat (SQLite) or its job's end can tell
    pid = int(worker.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet waited for is a zombie: dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def fail_orphans(study, finished_jobs: Collection[str] = frozenset()) -> list[int]:
    """Fail the running trials whose worker is gone and queue each again (Optuna's retry
    callback, as its heartbeat does); returns their numbers."""
    optuna = require_optuna()
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # Optuna's heartbeat (RDB storages with one)
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if worker is None or _alive(worker, set(finished_jobs)):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 - finished meanwhile (another process told it)
            continue
        _retry_callback()(study, study.get_trials(deepcopy=False)[t.number])
        failed.append(t.number)
        logger.warning(f"trial {t.number}: its worker ({worker.get('host')} pid {worker.get('pid')}) is gone: failed, queued again")
    return failed


def summarize_study(spec: TuneSpec, study) -> dict[str, Any]:
    """The study as `bench table --tuning` and the tuned row's label read it."""
    from optuna.trial import TrialState

    attrs = study.user_attrs
    best = None
    if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        b = study.best_trial
        best = {"number": b.number, "value": b.value, "params": b.params,
                "overrides": b.user_attrs.get("overrides"), "best_epoch": b.user_attrs.get("best_epoch")}
    return {
        "model": spec.run.model, "dataset": spec.run.dataset, "variant": spec.variant,
        "preset": attrs.get("preset"), "study": spec.study_name, "storage": spec.storage_url(),
        "metric": attrs.get("metric"), "direction": attrs.get("direction"), "budget": attrs.get("budget"),
        "trials": counts(study), "spent_s": spent_seconds(study), "best": best,
        "space": attrs.get("space"), "trial_seed": attrs.get("trial_seed"),
        "sampler": spec.sampler, "pruner": spec.pruner, "epochs": attrs.get("epochs"),
        "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _trial_line(study, trial, metric: str) -> str:
    c = counts(study)
    value = f"{trial.value:.4f}" if trial.value is not None else (
        f"last {list(trial.intermediate_values.values())[-1]:.4f}" if trial.intermediate_values else "-")
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    return (f"trial {trial.number} {trial.state.name.lower()}: valid {metric} {value} ({params}) "
            f"[{c['finished']} finished, {c['fail']} failed]")


# -- workers -------------------------------------------------------------------------------------

def run_worker(spec: TuneSpec, n_trials: Optional[int], timeout_s: Optional[float], index: int = 0,
               data: Any = None) -> dict[str, int]:
    """One worker: `n_trials` (or until the hours budget is spent) trials of the shared study."""
    from bench.logs import in_worker

    in_worker()  # a scheduler job's lines reach its log file
    with quiet_optuna():
        return _run_worker(spec, n_trials, timeout_s, index, data)


def _run_worker(spec: TuneSpec, n_trials: Optional[int], timeout_s: Optional[float], index: int,
                data: Any) -> dict[str, int]:
    resolved = resolve(spec)
    study = open_study(spec, resolved, create=False)
    # a fresh sampler seed per worker and per resumption, so a rerun does not replay the same draws
    study.sampler = _sampler(spec, spec.seed + 7919 * index + len(study.get_trials(deepcopy=False)))
    path = summary_path(spec.run.out_dir, spec.run.dataset, spec.variant)

    def after_trial(study, trial) -> None:
        logger.info(_trial_line(study, trial, resolved.metric))
        write_json_atomic(path, summarize_study(spec, study))
        if spec.budget_hours is not None and spent_seconds(study) >= spec.budget_hours * 3600:
            study.stop()

    study.optimize(Objective(spec, resolved, data), n_trials=n_trials, timeout=timeout_s,
                   catch=(Exception,), callbacks=[after_trial])
    return counts(study)


def _shares(n: Optional[int], k: int) -> list[Optional[int]]:
    return [None] * k if n is None else [s for s in (n // k + (i < n % k) for i in range(k)) if s > 0]


def _run_round(spec: TuneSpec, n: Optional[int], seconds: Optional[float], data: Any) -> set[str]:
    """One round of workers; returns the job ids that ended (submitit)."""
    timeout = None if seconds is None else seconds / spec.workers
    shares = _shares(n, spec.workers)
    if spec.launcher != "local":
        return _run_submitit(spec, shares, timeout)
    if len(shares) == 1:
        run_worker(spec, shares[0], timeout, 0, data)
    else:
        _run_local_pool(spec, shares, timeout)
    return set()


def _run_local_pool(spec: TuneSpec, shares: list, timeout: Optional[float]) -> None:
    from bench.launch import stop_pool, worker_pool

    with worker_pool(len(shares), spec.run.device) as pool:
        futures = [pool.submit(run_worker, spec, n, timeout, i) for i, n in enumerate(shares)]
        try:
            for i, fut in enumerate(futures):
                try:
                    fut.result()
                except Exception as err:  # noqa: BLE001 - a crashed worker: its trial is failed below
                    logger.error(f"worker {i} stopped: {type(err).__name__}: {err}")
        except KeyboardInterrupt:
            stop_pool(pool)  # the running trials are failed and queued again by the next run (fail_orphans)
            raise


def submit_workers(spec: TuneSpec, shares: list, timeout: Optional[float], folder: Optional[str] = None) -> list:
    """One submitit job per worker, all on the study's (journal) storage. Returns the jobs."""
    from bench.launch import SlurmOptions, executor_for  # bench.launch imports torch: only here
    from bench.plugins import WithPlugins

    opts = spec.slurm or SlurmOptions(folder=str(Path(spec.run.out_dir) / ".submitit" / "tune"))
    executor = executor_for(opts, f"tune-{spec.run.model}", folder=folder)
    return [executor.submit(WithPlugins(run_worker), spec, n, timeout, i) for i, n in enumerate(shares)]


def _run_submitit(spec: TuneSpec, shares: list, timeout: Optional[float]) -> set[str]:
    jobs = submit_workers(spec, shares, timeout)
    logger.info(f"submitted {len(jobs)} tuning worker job(s) ({', '.join(str(j.job_id) for j in jobs)})")
    for job in jobs:
        try:
            job.result()
        except Exception as err:  # noqa: BLE001 - killed or failed job: its running trial is failed below
            logger.warning(f"worker job {job.job_id} ended: {type(err).__name__}")
    return {str(job.job_id) for job in jobs}


# -- the driver ----------------------------------------------------------------------------------

def tune(spec: TuneSpec, *, final: bool = True, data: Any = None, force_final: bool = False) -> dict[str, Any]:
    """Run `spec`'s study to its budget, then (with `final`) the best configuration with the
    standard seeds. Returns the study summary (with "final": the sweep summary)."""
    with quiet_optuna():
        return _tune(spec, final, data, force_final)


def _tune(spec: TuneSpec, final: bool, data: Any, force_final: bool) -> dict[str, Any]:
    resolved = resolve(spec)
    study = open_study(spec, resolved)
    path = summary_path(spec.run.out_dir, spec.run.dataset, spec.variant)
    logger.info(f"tune {spec.study_name}: budget {_budget_text(spec.budget)}, {counts(study)['finished']} finished "
                f"so far ({'declared' if resolved.declared else 'default'} space: {', '.join(resolved.space)}; "
                f"storage {spec.storage_url()})")
    fail_orphans(study)
    write_json_atomic(path, summarize_study(spec, study))
    while True:
        n, seconds = remaining(spec, study)
        if (n is not None and n <= 0) or (seconds is not None and seconds <= 0):
            break
        before = counts(study)["finished"]
        ended = _run_round(spec, n, seconds, data)
        fail_orphans(study, ended)
        if counts(study)["finished"] == before:  # nothing finished: every trial failed, stop
            logger.warning(f"tune {spec.study_name}: a round of workers finished no trial; "
                           "stopping (see failed trials)")
            break
    summary = summarize_study(spec, study)
    write_json_atomic(path, summary)
    trials, best = summary["trials"], summary["best"]
    logger.info(f"tune {spec.study_name}: {trials['complete']} complete, {trials['pruned']} pruned, "
                f"{trials['fail']} failed; best "
                + (f"valid {summary['metric']} {best['value']:.4f} (trial {best['number']})" if best else "none"))
    if final:
        summary["final"] = run_final(spec, summary, force=force_final)
    return summary


def final_runs(spec: TuneSpec, summary: dict[str, Any]) -> list[RunConfig]:
    """The best configuration with the standard seeds, as a `<model>+tuned` variant."""
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in (summary["best"]["overrides"] or {}).items()}
    return [dataclasses.replace(spec.run, seed=s, overrides={**spec.run.overrides, **overrides}, variant=spec.variant)
            for s in spec.final_seeds]


def run_final(spec: TuneSpec, summary: dict[str, Any], force: bool = False):
    """Five seeds of the best trial through the normal runner; the folder keeps the study
    summary it came from (`tuning.json`: the table's "(tuned, N trials)")."""
    from bench.runner import config_changes, plan_runs, run_sweep

    if not summary.get("best"):
        logger.warning(f"tune {spec.study_name}: no complete trial, so no tuned run")
        return None
    runs = final_runs(spec, summary)
    force = force or any(config_changes(p) for p in plan_runs(runs))  # a new best replaces the old runs
    write_json_atomic(Path(spec.run.out_dir) / spec.run.dataset / spec.variant / "tuning.json", summary)
    return run_sweep(runs, force=force)


def _budget_text(budget: dict) -> str:
    return f"{budget['trials']} trials" if "trials" in budget else f"{budget['hours']:g} worker-hours"


# -- reading studies back (figure) --------------------------------------------------------------

def load_summary(out_dir: str | Path, dataset: str, variant: str) -> dict[str, Any]:
    path = summary_path(out_dir, dataset, variant)
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        have = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
        raise KeyError(f"no tuning study for '{variant}' on '{dataset}' ({path} not found; "
                       f"studies there: {', '.join(have) or 'none'}); run `python -m bench tune` first") from None
    for suffix, scheme in ((".db", "sqlite:///"), (".journal", "journal:")):  # a moved results folder
        if path.with_suffix(suffix).is_file():
            summary["storage"] = f"{scheme}{path.with_suffix(suffix).resolve()}"
    return summary


def study_history(summary: dict[str, Any]) -> tuple[list[dict], dict[str, float]]:
    """([{number, state, value}] in trial order, parameter importances) of a summarized study."""
    optuna = require_optuna()
    url = summary["storage"]
    for scheme in ("sqlite:///", "journal:"):  # a file storage that is gone: say which (opening would create it)
        if url.startswith(scheme) and not Path(url[len(scheme):]).is_file():
            raise ValueError(f"study '{summary['study']}': its storage file {url[len(scheme):]} does not exist "
                             "(moved or deleted?); rerun `python -m bench tune` or point --results at its folder")
    storage = open_storage(url, heartbeat=False)
    study = optuna.load_study(study_name=summary["study"], storage=storage)
    history = [{"number": t.number, "state": t.state.name.lower(),
                "value": t.value if t.value is not None else (  # pruned: its last report
                    list(t.intermediate_values.values())[-1] if t.intermediate_values else None)}
               for t in study.get_trials(deepcopy=False)]
    try:  # fANOVA (random forest, seeded): the evaluator the figure names
        importances = dict(optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)))
    except (RuntimeError, ValueError, ImportError):  # fewer than two complete trials, or one value per param
        importances = {}
    return history, importances


def format_space(model: str, dataset: str = "synthetic", preset: Optional[str] = None) -> str:
    """`bench tune --show-space MODEL`: every searched target with its range and source."""
    from tabulate import tabulate

    from bench.runner import plan_runs
    from models.registry import get_model_entry, search_space_of, split_target

    cfg = plan_runs([RunConfig(model=model, dataset=dataset, preset=preset)])[0].model_config
    space, declared = search_space_of(model, cfg)
    absolute = absolute_space(space, cfg)
    rows = []
    for target, p in space.items():
        now = ", ".join(repr(getattr(cfg, name) if index is None else getattr(cfg, name)[index])
                        for name, index in split_target(target))
        shown = p.describe() + (f" = [{absolute[target].low:.3g}, {absolute[target].high:.3g}]" if p.relative else "")
        rows.append([target, shown, now, p.source])
    head = (f"search space of {model} ({'declared next to its presets' if declared else 'the default space: none declared'}), "
            f"preset {cfg.preset} on {dataset}")
    text = head + "\n" + tabulate(rows, headers=["target", "values", "preset", "source"], tablefmt="github")
    if kept := [t for t in (get_model_entry(model).search_space or {}) if t not in space]:
        text += (f"\nkept at the {cfg.preset} preset's values (CPU-sized demo: batch size, width, depth): "
                 + ", ".join(kept))
    return text
