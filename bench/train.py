"""The one trainer (DESIGN §4). Every model trains here; models change behaviour only
through their own `loss()` and hooks.

Stages, per run:
  seed everything -> optimizer from the model's param groups -> per epoch: train
  (gradient accumulation that also applies the trailing batches, clipping, bf16 autocast on
  CUDA) -> validate -> Shapley contributions on validation -> early stopping on the declared
  validation key, best state kept in memory -> after training, test ONCE with the best
  state. The test split is not touched before that.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import resource
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from bench.batch import MODALITIES
from bench.data.base import MSAData, Split
from bench.metrics import METRICS, compute_metrics, contribution_utility, iemocap_majority_baseline
from bench.shapley import coalition_key, coalitions, shapley_from_fn
from models.base import MSAModel, count_parameters, task_loss


class TrainingError(RuntimeError):
    """A run stopped on a fault (e.g. a non-finite loss); `details` go into the result file."""

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.details = details


def seed_everything(seed: int) -> None:
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
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


def predict(
    model: MSAModel, split: Split, device: torch.device, batch_size: int,
    drop: frozenset = frozenset(), amp: bool = True,
) -> tuple[torch.Tensor, float]:
    """(predictions, loss) on `split` with the modalities in `drop` masked."""
    keep = ALL - frozenset(drop)
    return evaluate(model, split, device, batch_size, [keep], amp)[keep]


def shapley_of(results: dict[frozenset, tuple[torch.Tensor, float]], labels: torch.Tensor,
               utility: Callable[[torch.Tensor, torch.Tensor], float]) -> tuple[dict[str, float], dict[str, float]]:
    """Coalition utilities (by key) and exact Shapley values from `evaluate` results."""
    return shapley_from_fn(lambda c: utility(results[c][0], labels))


def coalition_utilities(
    model: MSAModel, split: Split, device: torch.device, batch_size: int,
    utility: Callable[[torch.Tensor, torch.Tensor], float], amp: bool = True,
) -> tuple[dict[str, float], dict[str, float]]:
    """Utility of all 8 modality coalitions on `split` and the exact Shapley values."""
    return shapley_of(evaluate(model, split, device, batch_size, COALITIONS, amp), split.labels, utility)


@dataclass
class TrainState:
    """What model hooks see: the run's objects plus evaluation helpers."""

    model: MSAModel
    optimizer: torch.optim.Optimizer
    data: MSAData
    device: torch.device
    seed: int
    amp: bool
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    valid_metrics: dict[str, float] = field(default_factory=dict)  # of the epoch just validated

    def predict(self, split: Split, drop: frozenset = frozenset()) -> tuple[torch.Tensor, float]:
        return predict(self.model, split, self.device, _eval_batch_size(self.model), drop, self.amp)

    def coalition_utilities(self, split: Split, utility: Callable[[torch.Tensor, torch.Tensor], float]):
        return coalition_utilities(self.model, split, self.device, _eval_batch_size(self.model), utility, self.amp)

    def group_lrs(self) -> dict[str, float]:
        return {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}


def _eval_batch_size(model: MSAModel) -> int:
    return model.cfg.eval_batch_size or model.cfg.batch_size


def build_optimizer(model: MSAModel) -> torch.optim.Optimizer:
    cfg = model.cfg
    groups = model.param_groups()
    seen: set[int] = set()
    for g in groups:
        ids = {id(p) for p in g["params"]}
        if ids & seen:
            raise ValueError(f"parameter group '{g.get('name')}' shares parameters with another group")
        seen |= ids
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(f"{len(missing)} trainable parameters are in no optimizer group (first: {missing[0]})")
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer '{cfg.optimizer}' (adam | adamw)")
    for g in opt.param_groups:
        g["base_lr"] = g["lr"]  # hooks (PaSE's SGM) scale from here
    return opt


def build_scheduler(model: MSAModel, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    cfg = model.cfg
    if cfg.scheduler is None:
        return None
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.scheduler_factor, patience=cfg.scheduler_patience
        )
    if cfg.scheduler == "linear_warmup":
        total = max(1, steps_per_epoch * cfg.max_epochs)
        warm = int(cfg.warmup_ratio * total)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm))
        )
    raise ValueError(f"unknown scheduler '{cfg.scheduler}' (plateau | linear_warmup)")


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # CPU: the process's peak resident set (Linux reports KiB); includes the loaded data
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _is_better(value: float, best: Optional[float], higher: bool, min_delta: float) -> bool:
    if best is None:
        return not math.isnan(value)
    return value >= best + min_delta if higher else value <= best - min_delta


def train_and_test(
    model: MSAModel,
    data: MSAData,
    *,
    seed: int,
    device: torch.device,
    amp: bool = True,
    contributions: bool = True,
    robustness: bool = True,
    progress: bool = False,
    log: Callable[[str], None] = lambda s: None,
    detect_anomaly: bool = False,
) -> dict[str, Any]:
    """Train with selection on validation, then test once. Returns the result-file fields
    that depend on training (metrics, history, timings, params, predictions)."""
    cfg = model.cfg
    task = cfg.task
    wall_start = time.perf_counter()
    # -- setup: seed, device, optimizer ------------------------------------------------
    seed_everything(seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.to(device)
    optimizer = build_optimizer(model)
    accum = max(1, cfg.grad_accum_steps)
    n_batches = data.train.num_batches(cfg.batch_size)
    steps_per_epoch = -(-n_batches // accum)  # the trailing partial group is a step too
    scheduler = build_scheduler(model, optimizer, steps_per_epoch)
    order_gen = torch.Generator().manual_seed(seed)  # data order: seeded, independent of model RNG use
    state = TrainState(model, optimizer, data, device, seed, amp)
    sel_key = cfg.selection_metric
    if sel_key not in METRICS:
        raise ValueError(f"selection_metric '{sel_key}' is not a known metric ({', '.join(METRICS)})")
    higher = METRICS[sel_key].higher_is_better
    best_value: Optional[float] = None
    best_epoch, best_state, best_valid = -1, None, {}
    epochs_since_best, step = 0, 0
    params_total = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    got_grad: set[str] = set()
    train_time = 0.0
    per_epoch_s: list[float] = []
    nondeterministic: list[str] = []
    util = lambda preds, labels: contribution_utility(task, preds, labels)  # noqa: E731

    for epoch in range(cfg.max_epochs):
        t_epoch = time.perf_counter()
        state.epoch = epoch
        record: dict[str, Any] = {"epoch": epoch}
        record.update(model.on_epoch_start(epoch, state) or {})

        # -- train: accumulate `accum` batches per step; the last partial group steps too --
        model.train()
        sums: dict[str, torch.Tensor] = {}
        optimizer.zero_grad(set_to_none=True)
        batches = data.train.batches(cfg.batch_size, shuffle=True, generator=order_gen)
        bar = _progress(batches, n_batches, f"ep {epoch}", progress)
        with warnings.catch_warnings(record=True) as caught, torch.autograd.set_detect_anomaly(detect_anomaly):
            warnings.simplefilter("always")
            for i, batch in enumerate(bar):
                batch = batch.to(device, non_blocking=True)
                with autocast(device, amp):
                    out = model(batch)
                    parts = model.loss(out, batch)
                loss = parts["total"]
                loss_value = loss.item()  # one sync per batch: needed to stop at once on NaN/inf
                if not math.isfinite(loss_value):
                    raise TrainingError(
                        f"non-finite loss ({loss_value}) at epoch {epoch}, step {step}, batch {i}",
                        epoch=epoch, step=step, batch=i, last_valid_metrics=state.valid_metrics or None,
                    )
                loss.backward()
                model.after_backward(step)
                if cfg.clip_grad_value is not None:  # MMSA MulT: after every backward
                    torch.nn.utils.clip_grad_value_([p for _, p in params_total], cfg.clip_grad_value)
                for k, v in parts.items():  # device-side sums: no extra sync per batch
                    sums[k] = sums[k] + v.detach().float() if k in sums else v.detach().float()
                if (i + 1) % accum == 0 or i + 1 == n_batches:
                    if cfg.clip_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_([p for _, p in params_total], cfg.clip_grad_norm)
                    if len(got_grad) < len(params_total):
                        got_grad.update(n for n, p in params_total if p.grad is not None)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    if cfg.scheduler == "linear_warmup":
                        scheduler.step()
                if progress and i % 10 == 0:
                    bar.set_postfix(loss=f"{loss_value:.4f}")
        for w in caught:  # record nondeterministic kernels; show every other warning as usual
            if "deterministic" in str(w.message):
                nondeterministic.append(str(w.message).splitlines()[0])
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        train_time += time.perf_counter() - t_epoch
        record["train"] = {k: float(v) / n_batches for k, v in sums.items()}
        record["lr"] = state.group_lrs()

        # -- validate (and, in the same pass, every modality coalition) -------------------
        results = evaluate(model, data.valid, device, _eval_batch_size(model), COALITIONS if contributions else (ALL,), amp)
        val_preds, val_loss = results[ALL]
        valid = compute_metrics(task, val_preds.numpy(), data.valid.labels.numpy())
        valid["loss"] = round(val_loss, cfg.val_loss_decimals) if cfg.val_loss_decimals is not None else val_loss
        record["valid"] = valid
        state.valid_metrics = valid
        if contributions:  # exact Shapley values of -MAE / accuracy on validation
            utilities, shapley = shapley_of(results, data.valid.labels, util)
            record["contributions"] = {"split": "valid", "utility": utilities, "shapley": shapley}
        record.update(model.on_epoch_end(epoch, state) or {})
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(valid["loss"])

        # -- select on validation only -------------------------------------------------------
        value = valid[sel_key]
        if _is_better(value, best_value, higher, cfg.min_delta):
            best_value, best_epoch, best_valid, epochs_since_best = value, epoch, dict(valid), 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            epochs_since_best += 1
        record["time_s"] = time.perf_counter() - t_epoch
        per_epoch_s.append(record["time_s"])
        state.history.append(record)
        log(_epoch_line(record, sel_key))
        if cfg.early_stop_patience is not None and epochs_since_best >= cfg.early_stop_patience:
            break

    # -- test once, with the state selected on validation ----------------------------------
    if best_state is not None:
        model.load_state_dict(best_state)
    # robustness: the same selected state under every modality coalition (no extra training)
    results = evaluate(model, data.test, device, _eval_batch_size(model), COALITIONS if robustness else (ALL,), amp)
    test_preds, test_loss = results[ALL]
    labels = data.test.labels.numpy()
    test = compute_metrics(task, test_preds.numpy(), labels)
    test["loss"] = test_loss
    metrics: dict[str, Any] = {"test": test, "valid": best_valid}
    if task == "iemocap":
        metrics["majority_baseline"] = iemocap_majority_baseline(data.train.labels.numpy(), labels)
    extra: dict[str, Any] = {}
    if robustness:
        per_coalition = {}
        for c in COALITIONS:
            if c:  # the empty coalition only enters the utilities
                m = test if c == ALL else compute_metrics(task, results[c][0].numpy(), labels)
                m.setdefault("loss", results[c][1])
                per_coalition[coalition_key(c)] = m
        utilities, shapley = shapley_of(results, data.test.labels, util)
        extra["robustness"] = {"split": "test", "coalitions": per_coalition, "utility": utilities, "shapley": shapley}

    counts = count_parameters(model)
    counts["with_grad"] = sum(p.numel() for n, p in params_total if n in got_grad)
    preds_list = test_preds.reshape(-1).tolist() if task == "regression" else test_preds.tolist()
    return {
        "metrics": metrics,
        "best_epoch": best_epoch,
        "epochs_run": len(state.history),
        "selected_on": "valid",
        "selection": {"key": sel_key, "higher_is_better": higher, "value": best_value},
        "history": state.history,
        "params": counts,
        "time": {"train_s": train_time, "wall_s": time.perf_counter() - wall_start, "per_epoch_s": per_epoch_s},
        "peak_memory_bytes": _peak_memory(device),
        "nondeterministic_ops": sorted(set(nondeterministic)),
        "model_summary": model.summary(),
        **extra,
        "predictions": {
            "split": "test",
            "ids": list(data.test.ids),
            "labels": data.test.labels.tolist(),
            "preds": preds_list,
        },
    }


def _progress(it, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _epoch_line(record: dict, sel_key: str) -> str:
    v = record["valid"]
    parts = [f"epoch {record['epoch']:3d}", f"train {record['train'].get('total', float('nan')):.4f}",
             f"valid {sel_key} {v[sel_key]:.4f}"]
    for k in ("Has0_acc_2", "MAE", "mean_acc"):
        if k in v:
            parts.append(f"{k} {v[k]:.4f}")
    if "contributions" in record:
        sh = record["contributions"]["shapley"]
        parts.append("shapley " + " ".join(f"{m}={sh[m]:+.3f}" for m in MODALITIES))
    parts.append(f"{record['time_s']:.1f}s")
    return " | ".join(parts)

