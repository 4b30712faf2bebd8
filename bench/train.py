"""The one trainer. Every model trains here; models change behaviour only
through their own `loss()`, hooks and (multi-stage methods) `stages()`.

Per run:
  seed everything -> for each stage (a model without stages is one stage): freeze what the
  stage does not train, optimizer from its param groups, the declared lr schedule (the
  model's or the stage's `Schedule`, applied by bench/schedule.py: no model writes the
  optimizer) -> per epoch: `train_epoch` (once per declared `Phase`, each with its own optimizer)
  (gradient accumulation that also applies the trailing batches, clipping, bf16 autocast on
  CUDA) -> `validate_epoch` (every modality coalition in the same pass, for the Shapley
  contributions) -> `_Selection` on the stage's validation key, best state kept in memory
  -> early stopping -> the selected state is loaded and handed to the next stage ->
  after the last stage, `test_once` with that state. The test split is not touched before.
  A run that completes no epoch, or never sees a finite validation value, is an error.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import random
import resource
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from bench.data.base import MSAData, Split
from bench.data.conditions import apply_to_batch
from bench.data.stage_data import load_stage_data
from bench.metrics import compute_metrics, contribution_utility, iemocap_majority_baseline
from bench.optim import make_optimizer
from bench.schedule import Scheduler
from bench.shapley import coalition_key, coalitions, shapley_from_fn
from models.base import INHERIT, Freeze, MSAModel, Multipliers, Phase, Schedule, Stage, count_parameters, task_loss
from models.constants import METRICS, MODALITIES
from models.protocol import improves


logger = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """A run stopped on a fault (e.g. a non-finite loss); `details` go into the result file."""

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.details = details


@contextlib.contextmanager
def process_state_restored() -> Iterator[None]:
    """Inside, a run may change process-wide settings (`seed_everything`: deterministic
    algorithms, cuDNN benchmark, CUBLAS_WORKSPACE_CONFIG; warning filters; torch threads);
    on leaving, also by an exception, each is put back as it was. RNG states are left as the
    run leaves them."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():  # restores the filters and showwarning
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    """Seed every RNG and make kernels deterministic; process-wide, so a run calls it inside
    `process_state_restored`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name} asked for, but torch sees no CUDA device")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (no loss scaling needed); a no-op on CPU."""
    on_gpu = enabled and device.type == "cuda"
    return torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else contextlib.nullcontext()


ALL = frozenset(MODALITIES)
COALITIONS = tuple(coalitions(MODALITIES))  # (), (t,), ..., (t, a, v)


@torch.no_grad()
def evaluate(
    model: MSAModel, split: Split, device: torch.device, batch_size: int,
    wanted: Sequence[frozenset] = (ALL,), amp: bool = True,
) -> dict[frozenset, tuple[torch.Tensor, float]]:
    """Predictions of every coalition in `wanted` on `split`, in one pass over the data.

    Returns {coalition: (predictions (N, n_out) on CPU in split order, MMSA loss = mean of
    batch-mean task losses)}. Absent modalities are masked at input level (Batch.without).
    A *separable* model (per-modality `encode` + `fuse`, each representation depending only
    on its own modality's input) is encoded twice per batch, with and without every
    modality, and each coalition fused from those: exactly what masked forward passes give,
    at the cost of two encodes instead of one forward per coalition.
    """
    model.eval()
    wanted = list(dict.fromkeys(frozenset(c) for c in wanted))
    preds: dict[frozenset, list] = {c: [] for c in wanted}
    losses: dict[frozenset, list] = {c: [] for c in wanted}
    fast = model.separable and len(wanted) > 1
    for batch in split.batches(batch_size):
        batch = batch.to(device)
        with autocast(device, amp):
            if fast:
                full = model.encode(batch)
                empty = model.encode(batch.without(ALL))
                outs = {c: model.fuse({m: (full if m in c else empty)[m] for m in MODALITIES}) for c in wanted}
            else:
                outs = {c: model(batch if c == ALL else batch.without(ALL - c)).pred for c in wanted}
        for c, pred in outs.items():
            losses[c].append(task_loss(pred, batch.labels, model.cfg.task))
            preds[c].append(pred.float())
    # one device->host copy per coalition at the end instead of a sync per batch
    return {c: (torch.cat(preds[c]).cpu(), float(torch.stack(losses[c]).mean())) for c in wanted}


def predict(model: MSAModel, split: Split, device: torch.device, batch_size: int, drop: frozenset = frozenset(),
            amp: bool = True) -> tuple[torch.Tensor, float]:
    """(predictions, loss) on `split` with the modalities in `drop` masked."""
    keep = ALL - frozenset(drop)
    return evaluate(model, split, device, batch_size, [keep], amp)[keep]


def shapley_of(results: dict[frozenset, tuple[torch.Tensor, float]], labels: torch.Tensor,
               utility: Callable[[torch.Tensor, torch.Tensor], float]) -> tuple[dict[str, float], dict[str, float]]:
    """Coalition utilities (by key) and exact Shapley values from `evaluate` results."""
    return shapley_from_fn(lambda c: utility(results[c][0], labels))


def coalition_utilities(model: MSAModel, split: Split, device: torch.device, batch_size: int,
                        utility: Callable[[torch.Tensor, torch.Tensor], float],
                        amp: bool = True) -> tuple[dict[str, float], dict[str, float]]:
    """Utility of all 8 modality coalitions on `split` and the exact Shapley values."""
    return shapley_of(evaluate(model, split, device, batch_size, COALITIONS, amp), split.labels, utility)


@dataclass(frozen=True)
class TrainingSplits:
    """The splits a hook may read: training and validation. There is no test split here: the
    trainer scores it once, after selection, outside every hook."""

    train: Split
    valid: Split


@dataclass
class TrainState:
    """What model hooks see: the run's objects plus evaluation helpers. `data` is always
    `TrainingSplits` (given an `MSAData`, only its train and valid splits are kept)."""

    model: MSAModel
    optimizer: torch.optim.Optimizer
    data: TrainingSplits | MSAData
    device: torch.device
    seed: int
    amp: bool
    epoch: int = 0
    history: list[dict] = field(default_factory=list)  # of the stage being trained
    valid_metrics: dict[str, float] = field(default_factory=dict)  # of the epoch just validated
    stage: Optional[str] = None  # the Stage being trained (None: a model without stages)
    stage_data: Any = None  # what bench/data loaded for the stage's `Stage.data` (None: none declared)

    def __post_init__(self) -> None:
        self.data = TrainingSplits(self.data.train, self.data.valid)

    def predict(self, split: Split, drop: frozenset = frozenset()) -> tuple[torch.Tensor, float]:
        return predict(self.model, split, self.device, eval_batch_size(self.model), drop, self.amp)

    def coalition_utilities(self, split: Split, utility: Callable[[torch.Tensor, torch.Tensor], float]):
        return coalition_utilities(self.model, split, self.device, eval_batch_size(self.model), utility, self.amp)

    def group_lrs(self, optimizer: Optional[torch.optim.Optimizer] = None) -> dict[str, float]:
        """{group name: lr} of `optimizer` (default: the stage's, `self.optimizer`)."""
        return {g.get("name", str(i)): g["lr"] for i, g in enumerate((optimizer or self.optimizer).param_groups)}


def eval_batch_size(model: MSAModel) -> int:
    return model.cfg.eval_batch_size or model.cfg.batch_size


def build_optimizer(model: MSAModel, groups: Optional[list[dict[str, Any]]] = None,
                    kind: Optional[str] = None, complete: bool = True) -> torch.optim.Optimizer:
    """The optimizer `kind` (default: the config's `optimizer`; bench/optim.py) over `groups`
    (default: the model's `param_groups()`), restricted to the parameters that train now (a
    stage freezes the rest; groups left empty are dropped). `complete`: every trainable
    parameter must be in a group (a `Phase`'s optimizer holds only its part)."""
    cfg = model.cfg
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]}
              for g in (model.param_groups() if groups is None else groups)]
    groups = [g for g in groups if g["params"]]
    seen: set[int] = set()
    for g in groups:
        ids = {id(p) for p in g["params"]}
        if ids & seen:
            raise ValueError(f"parameter group '{g.get('name')}' shares parameters with another group")
        seen |= ids
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing and complete:
        raise ValueError(f"{len(missing)} trainable parameters are in no optimizer group (first: {missing[0]})")
    opt = make_optimizer(kind or cfg.optimizer, groups, cfg.lr, cfg.weight_decay, cfg.adam_epsilon)
    for g in opt.param_groups:
        g["base_lr"] = g["lr"]  # the declared schedule (and PaSE's SGM) scale from here
    return opt


def peak_memory(device: torch.device) -> int:
    """Bytes: CUDA max_memory_allocated on a GPU, else the process's peak resident set."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # includes the loaded data; Linux reports KiB
    return int(rss if sys.platform == "darwin" else rss * 1024)


def apply_freeze(freeze: Optional[Freeze], epoch: int) -> dict[str, Any]:
    """A stage's declared `Freeze` at the start of `epoch`: its parameters frozen while epoch < freeze.epochs."""
    if freeze is None:
        return {}
    frozen = epoch < freeze.epochs
    for p in freeze.params():
        p.requires_grad_(not frozen)
    return {freeze.record: frozen}


GradScale = list[tuple[list[torch.nn.Parameter], float]]  # (branch parameters, factor)


def apply_multipliers(model: MSAModel, optimizer: torch.optim.Optimizer, mult: Optional[Multipliers]) -> GradScale:
    """Sets every group's lr to base_lr * mult.lr factor (1.0 unnamed) now; returns the
    (parameters, factor) pairs whose gradients `train_epoch` scales after every backward."""
    name = type(model).__name__
    if mult is None:
        return []
    if mult.lr is not None:
        groups = [g.get("name") for g in optimizer.param_groups]
        if unknown := sorted(set(mult.lr) - set(groups)):
            raise ValueError(f"{name}.training_multipliers: lr for unknown optimizer groups {unknown} (groups: {groups})")
        if (kind := model.lr_schedule().kind) is not None:
            raise ValueError(f"{name}.training_multipliers sets every lr each epoch: its schedule "
                             f"'{kind}' would fight it")
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * mult.lr.get(g.get("name", ""), 1.0)
    if not mult.grad:
        return []
    branches = model.modality_params()
    if unknown := sorted(set(mult.grad) - set(branches)):
        raise ValueError(f"{name}.training_multipliers: grad for unknown modalities {unknown} (branches: {list(branches)})")
    if model.cfg.grad_accum_steps > 1:
        raise ValueError(f"{name}.training_multipliers scales .grad after every backward: grad_accum_steps="
                         f"{model.cfg.grad_accum_steps} would scale accumulated micro-batches repeatedly")
    return [(params, mult.grad[m]) for m, params in branches.items() if m in mult.grad]


def _scale_grads(scale: GradScale) -> None:
    for params, factor in scale:
        for p in params:
            if p.grad is not None:
                p.grad.mul_(factor)


# -- one run: shared context, stages, selection -----------------------------------------------
@dataclass
class _Run:
    """The objects every stage of one run shares."""

    model: MSAModel
    data: MSAData
    state: TrainState
    contributions: bool
    progress: bool
    log_epochs: bool  # one INFO line per epoch
    detect_anomaly: bool
    on_epoch: Optional[Callable[[dict], None]]
    order_gen: torch.Generator  # data order: seeded, independent of model RNG use
    train_missing: Optional[Any] = None  # a bench.data.conditions.Condition applied to every training batch
    missing_gen: Optional[torch.Generator] = None  # its masks: seeded, apart from the data order
    stream: Optional[Iterator[Any]] = None  # a stage's own training batches (StageData.as_batches)
    step: int = 0  # optimizer steps over all stages
    got_grad: set[str] = field(default_factory=set)  # parameters that ever received a gradient
    nondeterministic: list[str] = field(default_factory=list)


@dataclass
class _StageSettings:
    """A Stage with every INHERIT resolved from the model config."""

    stage: Stage
    max_epochs: int
    patience: Optional[int]
    sel_key: str
    higher: bool
    batch_size: int
    schedule: Schedule
    optimizer: str

    @classmethod
    def of(cls, stage: Stage, model: MSAModel) -> "_StageSettings":
        cfg = model.cfg
        pick = lambda v, default: default if v is INHERIT else v  # noqa: E731
        sel_key = pick(stage.selection_metric, cfg.selection_metric)
        if sel_key not in METRICS:
            raise ValueError(f"selection_metric '{sel_key}' is not a known metric ({', '.join(METRICS)})")
        # cfg.max_epochs caps every stage, so --epochs N bounds each stage of a staged model too
        max_epochs = min(pick(stage.max_epochs, cfg.max_epochs), cfg.max_epochs)
        return cls(stage, max_epochs, pick(stage.early_stop_patience, cfg.early_stop_patience),
                   sel_key, METRICS[sel_key].higher_is_better, pick(stage.batch_size, cfg.batch_size),
                   _stage_schedule(stage, model), pick(stage.optimizer, cfg.optimizer))


def _stage_schedule(stage: Stage, model: MSAModel) -> Schedule:
    """The stage's schedule (default: the model's) with the stage's warm-up ratio, if it sets one."""
    schedule = model.lr_schedule() if stage.schedule is INHERIT else stage.schedule
    return schedule if stage.warmup_ratio is INHERIT else replace(schedule, warmup_ratio=stage.warmup_ratio)


@dataclass
class _Selection:
    """The best validation epoch of a stage so far and its state (kept on the CPU)."""

    higher: bool
    min_delta: float
    value: Optional[float] = None
    epoch: int = -1
    valid: dict = field(default_factory=dict)
    state: Optional[dict] = None
    since_best: int = 0

    def update(self, value: float, epoch: int, valid: dict, model: MSAModel) -> None:
        if improves(value, self.value, higher=self.higher, min_delta=self.min_delta):
            self.value, self.epoch, self.valid, self.since_best = value, epoch, dict(valid), 0
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.since_best += 1


@contextlib.contextmanager
def frozen_except(model: MSAModel, stage: Stage):
    """Inside: only `stage.trainable()` (default: everything trainable as built) trains."""
    built = {n: p.requires_grad for n, p in model.named_parameters()}
    if stage.trainable is not None:
        keep = {id(p) for p in stage.trainable()}
        for p in model.parameters():
            p.requires_grad_(p.requires_grad and id(p) in keep)
    try:
        yield
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(built[n])


@contextlib.contextmanager
def _recording_nondeterminism(found: list[str]):
    """Inside: torch's warnings about nondeterministic kernels are added to `found` (training,
    validation, hooks and test alike); every other warning is shown as usual on the way out."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for w in caught:
            if "deterministic" in str(w.message):
                found.append(str(w.message).splitlines()[0])
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


@dataclass
class _Pass:
    """One pass over the training split per epoch: the model's only one, or one of its `Phase`s."""

    phase: Optional[Phase]
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    n_batches: int  # batches this pass reads each epoch


def build_passes(run: _Run, stage: Stage, s: _StageSettings) -> list[_Pass]:
    """One `_Pass` per declared `Phase` (each its own optimizer and schedule), else one pass
    with the stage's optimizer over its param groups."""
    model, cfg = run.model, run.model.cfg
    n_all = run.data.train.num_batches(s.batch_size)
    phases: list[Optional[Phase]] = list(model.phases()) or [None]
    if phases != [None] and stage.param_groups is not None:
        raise ValueError(f"{type(model).__name__}: stage '{stage.name}' declares param_groups and the model "
                         "declares phases (each phase has its own groups): declare one of them")
    passes = []
    for ph in phases:
        if ph is None:
            groups = stage.param_groups() if stage.param_groups else None
            n, schedule = n_all, s.schedule
        else:
            groups, n = ph.param_groups(), max(1, math.ceil(ph.fraction * n_all))
            schedule = s.schedule if ph.schedule is INHERIT else ph.schedule
        optimizer = build_optimizer(model, groups, s.optimizer, complete=ph is None)
        passes.append(_Pass(ph, optimizer, Scheduler(schedule, optimizer, -(-n // max(1, cfg.grad_accum_steps)),
                                                     s.max_epochs), n))
    stepped = {id(p) for ps in passes for g in ps.optimizer.param_groups for p in g["params"]}
    if missing := [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in stepped]:
        raise ValueError(f"{type(model).__name__}.phases(): {len(missing)} trainable parameters are in no "
                         f"phase's groups (first: {missing[0]})")
    return passes


def train_phases(run: _Run, s: _StageSettings, passes: list[_Pass], epoch: int,
                 grad_scale: GradScale) -> dict[str, Any]:
    """The epoch's passes in order (`model.train_phase` set during each); the last pass's loss means,
    the others' as "<phase>.<part>"."""
    model, out = run.model, {}
    try:
        for p in passes:
            model.train_phase = p.phase.name if p.phase is not None else None
            means = train_epoch(run, s, p, epoch, grad_scale)
            out.update(means if p is passes[-1] else {f"{model.train_phase}.{k}": v for k, v in means.items()})
    finally:
        model.train_phase = None
    return out


def train_epoch(run: _Run, s: _StageSettings, p: _Pass, epoch: int, grad_scale: GradScale) -> dict[str, Any]:
    """One pass over (the first `p.n_batches` batches of) the training split (gradients
    scaled by `grad_scale`, see `apply_multipliers`); returns the pass's loss means."""
    model, data, cfg = run.model, run.data, run.model.cfg
    device, amp = run.state.device, run.state.amp
    loss_fn = s.stage.loss or model.loss
    accum = max(1, cfg.grad_accum_steps)
    n_batches, optimizer, scheduler = p.n_batches, p.optimizer, p.scheduler
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in trainable]
    model.train()
    sums: dict[str, torch.Tensor] = {}
    model.zero_grad(set_to_none=True)  # every gradient, also of parameters another phase steps
    batches: Iterator[Any] = data.train.batches(s.batch_size, shuffle=True, generator=run.order_gen)
    if run.stream is not None:  # the stage's own data: its next batch at each labeled step
        batches = (next(run.stream) for _ in batches)
    bar = _progress(batches, n_batches, f"{s.stage.name + ' ' if model.stage else ''}ep {epoch}", run.progress)
    with torch.autograd.set_detect_anomaly(run.detect_anomaly):
        for i, batch in enumerate(bar):
            if i == n_batches:  # a phase reading a fraction of the epoch
                break
            if run.train_missing is not None and run.missing_gen is not None:  # --train-missing: fresh masks every batch
                batch = apply_to_batch(batch, run.train_missing, run.missing_gen)
            batch = model.training_batch(batch, run.state).to(device, non_blocking=True)
            with autocast(device, amp):
                out = model(batch)
                parts = loss_fn(out, batch)
            loss = parts["total"]
            loss_value = loss.item()  # one sync per batch: needed to stop at once on NaN/inf
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"non-finite loss ({loss_value}) at epoch {epoch}, step {run.step}, batch {i}"
                    + (f", stage {model.stage}" if model.stage else ""),
                    epoch=epoch, step=run.step, batch=i, last_valid_metrics=run.state.valid_metrics or None,
                )
            loss.backward()
            model.after_backward(run.step)
            _scale_grads(grad_scale)
            if cfg.clip_grad_value is not None:  # MMSA MulT: after every backward
                torch.nn.utils.clip_grad_value_(params, cfg.clip_grad_value)
            for k, v in parts.items():  # device-side sums: no extra sync per batch
                sums[k] = sums[k] + v.detach().float() if k in sums else v.detach().float()
            if (i + 1) % accum == 0 or i + 1 == n_batches:
                if cfg.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
                if not run.got_grad.issuperset(n for n, _ in trainable):  # names, not counts: stages share names
                    run.got_grad.update(n for n, p in trainable if p.grad is not None)
                scheduler.before_step()
                optimizer.step()
                model.zero_grad(set_to_none=True)
                run.step += 1
                scheduler.after_step()
            if run.progress and i % 10 == 0:
                bar.set_postfix(loss=f"{loss_value:.4f}")
    return {k: float(v) / n_batches for k, v in sums.items()}


def validate_epoch(run: _Run, s: _StageSettings, record: dict[str, Any]) -> dict[str, float]:
    """Validation metrics (and, in the same pass, every modality coalition) into `record`."""
    model, data, cfg = run.model, run.data, run.model.cfg
    shapley = run.contributions and s.stage.contributions
    results = evaluate(model, data.valid, run.state.device, eval_batch_size(model),
                       COALITIONS if shapley else (ALL,), run.state.amp)
    val_preds, val_loss = results[ALL]
    valid = compute_metrics(cfg.task, val_preds.numpy(), data.valid.labels.numpy(), data.info.name)
    valid["loss"] = round(val_loss, cfg.val_loss_decimals) if cfg.val_loss_decimals is not None else val_loss
    record["valid"] = valid
    if shapley:  # exact Shapley values of -MAE / accuracy on validation
        utilities, values = shapley_of(results, data.valid.labels, functools.partial(contribution_utility, cfg.task))
        record["contributions"] = {"split": "valid", "utility": utilities, "shapley": values}
    return valid


def run_stage(run: _Run, stage: Stage, stage_data: Any = None) -> dict[str, Any]:
    """Train one stage with selection on validation; leaves the selected state loaded.
    `stage_data`: what bench/data loaded for `stage.data`. Returns the stage's record
    (history, best epoch, selection, time)."""
    model, state, cfg = run.model, run.state, run.model.cfg
    s = _StageSettings.of(stage, model)
    staged = model.stage is not None
    state.stage_data = stage_data
    as_batches = stage.data is not None and stage.data.as_batches
    run.stream = stage_data.batches(s.batch_size, state.seed) if as_batches else None
    with frozen_except(model, stage):
        passes = build_passes(run, stage, s)
        optimizer = passes[-1].optimizer  # the last (main) pass's: the one multipliers and `state` see
        state.optimizer, state.history, state.stage = optimizer, [], model.stage
        with _recording_nondeterminism(run.nondeterministic):
            info = (model.on_stage_start(stage, state) or {}) if staged else {}
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        best = _Selection(s.higher, cfg.min_delta)
        train_time, per_epoch_s = 0.0, []
        for epoch in range(s.max_epochs):
            t_epoch = time.perf_counter()
            state.epoch = epoch
            record: dict[str, Any] = {"epoch": epoch, **({"stage": stage.name} if staged else {})}
            for p in passes:
                record.update(p.scheduler.start_epoch(epoch))  # the declared lr (and optimizer reset)
            record.update(apply_freeze(stage.freeze, epoch))
            with _recording_nondeterminism(run.nondeterministic):
                record.update(model.on_epoch_start(epoch, state) or {})
                grad_scale = apply_multipliers(model, optimizer, model.training_multipliers(epoch, state))
                record["train"] = train_phases(run, s, passes, epoch, grad_scale)
                train_time += time.perf_counter() - t_epoch
                record["lr"] = {k: v for p in passes for k, v in state.group_lrs(p.optimizer).items()}
                valid = state.valid_metrics = validate_epoch(run, s, record)
                record.update(model.on_epoch_end(epoch, state) or {})
            for p in passes:
                p.scheduler.end_epoch(valid["loss"])
            best.update(valid[s.sel_key], epoch, valid, model)  # select on validation only
            record["time_s"] = time.perf_counter() - t_epoch
            per_epoch_s.append(record["time_s"])
            state.history.append(record)
            if run.log_epochs:
                logger.info(_epoch_line(record, s.sel_key))
            if run.on_epoch is not None:
                run.on_epoch(record)
            if s.patience is not None and best.since_best >= s.patience:
                break
    where = f" in stage '{stage.name}'" if staged else ""
    if not state.history:
        raise TrainingError(f"no training epoch completed{where} (max_epochs={s.max_epochs}); nothing to select or test")
    if best.state is None:
        raise TrainingError(f"validation {s.sel_key} was never finite{where} ({len(state.history)} epochs); "
                            "no state to select", last_valid_metrics=state.valid_metrics)
    model.load_state_dict(best.state)
    return {
        "name": stage.name, "history": state.history, "best_epoch": best.epoch, "epochs_run": len(state.history),
        "selection": {"key": s.sel_key, "higher_is_better": s.higher, "value": best.value},
        "valid": best.valid, "params_trainable": trainable, "train_s": train_time, "per_epoch_s": per_epoch_s,
        **({"info": info} if info else {}),
    }


def test_once(run: _Run, robustness: bool, curves: bool = False) -> dict[str, Any]:
    """The test split, scored once with the selected state (every coalition if `robustness`); with
    `curves`, also the robustness curves (bench/robustness.py) of that state (evaluation only)."""
    model, data, task = run.model, run.data, run.model.cfg.task
    results = evaluate(model, data.test, run.state.device, eval_batch_size(model),
                       COALITIONS if robustness else (ALL,), run.state.amp)
    test_preds, test_loss = results[ALL]
    labels = data.test.labels.numpy()
    test = compute_metrics(task, test_preds.numpy(), labels, data.info.name)
    test["loss"] = test_loss
    out: dict[str, Any] = {"metrics": {"test": test}}
    if robustness:  # the same selected state under every modality coalition (no extra training)
        # the empty coalition only enters the utilities; each from its own predictions
        per_coalition = {coalition_key(c): {**compute_metrics(task, results[c][0].numpy(), labels, data.info.name),
                                            "loss": results[c][1]} for c in COALITIONS if c}
        utilities, shapley = shapley_of(results, data.test.labels, functools.partial(contribution_utility, task))
        out["robustness"] = {"split": "test", "coalitions": per_coalition, "utility": utilities, "shapley": shapley}
    preds_list = test_preds.reshape(-1).tolist() if task == "regression" else test_preds.tolist()
    out["predictions"] = {"split": "test", "ids": list(data.test.ids), "labels": data.test.labels.tolist(),
                          "preds": preds_list}
    if curves:
        from bench.robustness import robustness_curves

        out["robustness_curves"] = robustness_curves(model, data.test, run.state.device, eval_batch_size(model),
                                                     run.state.amp, task)
    return out


def train_and_test(
    model: MSAModel, data: MSAData, *, seed: int, device: torch.device, amp: bool = True,
    contributions: bool = True, robustness: bool = True, progress: bool = False, log_epochs: bool = True,
    detect_anomaly: bool = False, on_epoch: Optional[Callable[[dict], None]] = None, test: bool = True,
    curves: bool = False, train_missing: Any = None,
) -> dict[str, Any]:
    """Train each stage with selection on validation, then test once. Returns the
    result-file fields that depend on training (metrics, history, timings, params, predictions).

    `on_epoch(record)` is called after every validated epoch (an exception it raises, e.g. a
    tuner's prune signal, propagates); `test=False` never touches the test split (tuning trials).
    `curves`: after the test, the robustness curves (bench/robustness.py) of the selected state;
    `train_missing`: a Condition applied to every training batch (masks from a generator seeded
    with `seed`, apart from the data order).
    """
    wall_start = time.perf_counter()
    # -- setup: seed, device, optimizer per stage ----------------------------------------
    seed_everything(seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.to(device)
    state = TrainState(model, None, data, device, seed, amp)  # type: ignore[arg-type]  # optimizer: per stage
    run = _Run(model, data, state, contributions, progress, log_epochs, detect_anomaly, on_epoch,
               torch.Generator().manual_seed(seed), train_missing, torch.Generator().manual_seed(seed))
    declared = model.stages()
    loaded = [load_stage_data(st.data, model.cfg) if st.data else None for st in declared]  # checked before training
    stages = []
    try:
        for stage, stage_data in zip(declared or [Stage("train")], loaded or [None], strict=True):
            model.stage = stage.name if declared else None
            if declared:
                logger.info(f"stage {stage.name}")
            stages.append(run_stage(run, stage, stage_data))
    finally:
        run.stream = None
        model.stage = declared[-1].name if declared else None  # evaluate as the last stage trained
    last = stages[-1]
    # -- test once, with the state selected on validation ----------------------------------
    with _recording_nondeterminism(run.nondeterministic):  # `test=False` (a tuning trial): no test at all
        tested = test_once(run, robustness, curves) if test else {"metrics": {}}
    tested["metrics"]["valid"] = last["valid"]
    if test and model.cfg.task == "iemocap":
        tested["metrics"]["majority_baseline"] = iemocap_majority_baseline(
            data.train.labels.numpy(), data.test.labels.numpy())
    return _training_fields(run, stages, tested, bool(declared), wall_start, device)


def _training_fields(run: _Run, stages: list[dict], tested: dict[str, Any], staged: bool, wall_start: float,
                     device: torch.device) -> dict[str, Any]:
    """The result-file fields of a trained (and tested) run; `staged`: the model declares stages."""
    last = stages[-1]
    counts = count_parameters(run.model)
    counts["with_grad"] = sum(p.numel() for n, p in run.model.named_parameters() if n in run.got_grad)
    train_s = sum(st["train_s"] for st in stages)
    times: dict[str, Any] = {"train_s": train_s, "wall_s": time.perf_counter() - wall_start,
                             "per_epoch_s": last["per_epoch_s"]}
    if staged:
        times["stages_s"] = {st["name"]: st["train_s"] for st in stages}
    return {
        "metrics": tested.pop("metrics"), "best_epoch": last["best_epoch"], "epochs_run": last["epochs_run"],
        "selected_on": "valid", "selection": last["selection"], "history": last["history"], "params": counts,
        "time": times, "peak_memory_bytes": peak_memory(device),
        "nondeterministic_ops": sorted(set(run.nondeterministic)), "model_summary": run.model.summary(),
        **({"stages": stages} if staged else {}), **tested,
    }


def _progress(it, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _epoch_line(record: dict, sel_key: str) -> str:
    v = record["valid"]
    parts = [f"epoch {record['epoch']:3d}", f"train {record['train'].get('total', float('nan')):.4f}",
             f"valid {sel_key} {v[sel_key]:.4f}",
             *(f"{k} {v[k]:.4f}" for k in ("Has0_acc_2", "Mult_acc_2", "MAE", "mean_acc") if k in v)]
    if "contributions" in record:
        sh = record["contributions"]["shapley"]
        parts.append("shapley " + " ".join(f"{m}={sh[m]:+.3f}" for m in MODALITIES))
    parts.append(f"{record['time_s']:.1f}s")
    return " | ".join(parts)

