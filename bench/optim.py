"""The optimizers the trainer builds (`ModelConfig.optimizer`), and the transformers-style AdamW.

torch's AdamW and the AdamW that transformers 4.x shipped (`transformers.optimization.AdamW`,
deprecated, removed in 5.0; the reference code of GLoMo, MAG-BERT and ConFEDE's text stage
uses it) compute the same moments, and differ in two places:
- eps: torch divides by sqrt(v / (1 - b2^t)) + eps; transformers by sqrt(v) + eps and puts
  the bias corrections in the step size lr * sqrt(1 - b2^t) / (1 - b1^t). For gradients near
  eps the first steps after a (re)start differ (torch's are larger);
- weight decay: torch multiplies p by (1 - lr * wd) before the update; transformers subtracts
  lr * wd * p from the updated p;
and transformers' default eps is 1e-6 (torch: 1e-8).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Optional

import torch

from models.base import OPTIMIZERS


class AdamWHF(torch.optim.Optimizer):
    """transformers.optimization.AdamW (4.x, e.g. huggingface/transformers@ad1fc96
    src/transformers/optimization.py `class AdamW`), same defaults; `correct_bias=False` is
    BERT's TF optimizer (no bias correction)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, correct_bias: bool = True):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"AdamWHF: invalid lr {lr}, eps {eps} or betas {betas}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                                  "correct_bias": correct_bias})

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                step_size = group["lr"]
                if group["correct_bias"]:
                    step_size *= math.sqrt(1.0 - beta2 ** state["step"]) / (1.0 - beta1 ** state["step"])
                p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-step_size)  # eps before the bias correction
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])  # decay after the update
        return loss


def make_optimizer(kind: str, groups: list[dict[str, Any]], lr: float, weight_decay: float,
                   eps: Optional[float] = None) -> torch.optim.Optimizer:
    """`kind` over `groups` (a group's own lr / weight_decay / eps win); eps None: the optimizer's
    default (torch 1e-8, adamw_hf 1e-6, as transformers)."""
    opts: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay, **({} if eps is None else {"eps": eps})}
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adamw_hf": AdamWHF}  # adam: decay as coupled L2
    if kind not in classes:
        raise ValueError(f"unknown optimizer '{kind}' ({' | '.join(OPTIMIZERS)})")
    return classes[kind](groups, **opts)
