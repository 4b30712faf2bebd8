"""Learning-rate schedules: the factor arithmetic of each `Schedule` kind (models/base.py) and
`Scheduler`, through which the trainer applies a model's (or a stage's) declared schedule.

Every group's lr is its `base_lr` (the lr it was built with) x the factor, set at each epoch
start and, for the per-step kinds, before every optimizer step (and, with `next_step_lr`, after
it: torch's LambdaLR convention). `plateau` is torch's ReduceLROnPlateau on the validation loss.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from models.base import SCHEDULE_KINDS, Schedule

PER_STEP = ("linear_warmup", "cosine_warmup")
PER_EPOCH = ("warmup_cosine_epochs", "cosine_epochs", "milestones")


def linear_warmup_factor(step: int, *, warmup_steps: int, total_steps: int) -> float:
    """transformers `get_linear_schedule_with_warmup` as the trainer always stepped it: (step + 1) / warmup
    during warm-up, then linear decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def cosine_warmup_factor(step: int, *, warmup_steps: float, total_steps: int, clamp: bool = False) -> float:
    """transformers `get_cosine_schedule_with_warmup` (num_cycles 0.5) as a LambdaLR lambda:
    step / warmup for step < warmup, else 0.5 (1 + cos(pi p)), p = (step - warmup) / (total - warmup).
    p is not clamped (as transformers codes it: the factor climbs back after `total_steps`) unless `clamp`."""
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
    if clamp:
        progress = min(progress, 1.0)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def warmup_cosine_epochs_factor(epoch: int, *, n_epochs: int, warmup_ratio: float = 0.1) -> float:
    """GradualWarmupScheduler(multiplier=1, total_epoch=W) then CosineAnnealingLR(T_max=N - W), W =
    warmup_ratio x N, per epoch: e / W for e <= W (epoch 0 trains at lr 0), then 0.5 (1 + cos(pi k / T))
    with k counted from the first epoch after warm-up."""
    warm, t_max = warmup_ratio * n_epochs, (1 - warmup_ratio) * n_epochs
    if epoch <= warm:
        return epoch / warm
    return 0.5 * (1 + math.cos(math.pi * (epoch - math.floor(warm) - 1) / t_max))


def cosine_epochs_factor(epoch: int, *, t_max: int) -> float:
    """CosineAnnealingLR(T_max), eta_min 0, after `epoch` scheduler steps (closed form: re-rises after T_max)."""
    return 0.5 * (1 + math.cos(math.pi * epoch / t_max))


def milestones_factor(epoch: int, *, milestones: tuple[int, ...], decay: float) -> float:
    """`decay` to the power of the milestones reached by `epoch`."""
    return decay ** sum(epoch >= m for m in milestones)


class Scheduler:
    """Applies `schedule` to `optimizer` during one stage of `max_epochs` epochs of
    `steps_per_epoch` optimizer steps; the trainer calls `start_epoch`, `before_step`,
    `after_step` and `end_epoch`."""

    def __init__(self, schedule: Schedule, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                 max_epochs: int):
        if schedule.kind is not None and schedule.kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind '{schedule.kind}' (from {schedule.source or 'lr_schedule()'}; "
                             f"expected None or one of {' | '.join(SCHEDULE_KINDS)})")
        if schedule.optimizer_reset not in (None, "every_epoch"):
            raise ValueError(f"unknown optimizer_reset '{schedule.optimizer_reset}' (from "
                             f"{schedule.source or 'lr_schedule()'}; expected None or every_epoch)")
        self.schedule, self.optimizer, self.steps_per_epoch = schedule, optimizer, steps_per_epoch
        self.epochs = max_epochs if schedule.epochs is None else schedule.epochs
        self.step, self.epoch = 0, 0  # optimizer steps taken in this stage; the epoch being trained
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=schedule.decay, patience=schedule.patience)
            if schedule.kind == "plateau" else None)

    def factor(self, epoch: int, step: int) -> float:
        """The factor of optimizer step `step` (of epoch `epoch`); 1.0 without a factor schedule."""
        s, kind = self.schedule, self.schedule.kind
        if kind == "linear_warmup":
            total = max(1, self.steps_per_epoch * self.epochs)
            return linear_warmup_factor(step, warmup_steps=int(s.warmup_ratio * total), total_steps=total)
        if kind == "cosine_warmup":
            total = self.steps_per_epoch * self.epochs
            return cosine_warmup_factor(step, warmup_steps=s.warmup_ratio * total, total_steps=total,
                                        clamp=s.cosine_clamp)
        if kind == "warmup_cosine_epochs":
            return warmup_cosine_epochs_factor(epoch, n_epochs=self.epochs, warmup_ratio=s.warmup_ratio)
        if kind == "cosine_epochs":
            return cosine_epochs_factor(epoch, t_max=self.epochs)
        if kind == "milestones":
            return milestones_factor(epoch, milestones=s.milestones, decay=s.decay)
        return 1.0

    def _set(self, factor: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor

    def start_epoch(self, epoch: int) -> dict[str, Any]:
        """Before epoch `epoch`: the optimizer reset (if declared) and the lr of its first step;
        returns the history fields (`lr_factor` when the schedule records it)."""
        if self.schedule.optimizer_reset == "every_epoch" and epoch > 0:
            self.optimizer.state.clear()
        factor = self.factor(epoch, self.step)
        if self.schedule.kind in PER_STEP + PER_EPOCH:
            self._set(factor)
        self.epoch = epoch
        return {"lr_factor": factor} if self.schedule.record_factor else {}

    def before_step(self) -> None:
        if self.schedule.kind in PER_STEP:
            self._set(self.factor(self.epoch, self.step))

    def after_step(self) -> None:
        self.step += 1
        if self.schedule.kind in PER_STEP and self.schedule.next_step_lr:
            self._set(self.factor(self.epoch, self.step))

    def end_epoch(self, valid_loss: float) -> None:
        """After validation: `plateau` steps on the validation loss."""
        if self.plateau is not None:
            self.plateau.step(valid_loss)
