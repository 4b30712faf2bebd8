"""Phases (models/base.py `Phase`, bench/train.py `build_passes` / `train_phases`): passes over
the training split inside every epoch, each stepping its own optimizer (MMIM's MMILB phase,
then the rest). A toy model: phase "heads" trains the unimodal heads on half the batches,
phase "main" the rest; both losses reach every parameter."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from bench.train import train_and_test
from models.base import Phase, Schedule
from models.late_fusion import PRESETS, LateFusion


class TwoPhase(LateFusion):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.seen: list[tuple[str, dict[str, torch.Tensor], bool]] = []

    def heads(self) -> list:
        return list(self.unimodal_head.parameters())

    def phases(self):
        heads = {id(p) for p in self.heads()}
        rest = [p for p in self.parameters() if id(p) not in heads]
        return [Phase("heads", lambda: [{"name": "heads", "params": self.heads(), "lr": 0.05, "weight_decay": 0.0}],
                      fraction=0.5, schedule=Schedule()),
                Phase("main", lambda: [{"name": "main", "params": rest, "lr": 0.01, "weight_decay": 0.0}])]

    def loss(self, output, batch):
        parts = super().loss(output, batch)  # fused task + unimodal terms: gradients reach every parameter
        return {**parts, "total": parts["total"] + sum(o.pow(2).mean() for o in output.unimodal.values())}

    def training_batch(self, batch, state):
        snapshot = {n: p.detach().clone() for n, p in self.named_parameters()}
        self.seen.append((self.train_phase, snapshot, all(p.grad is None for p in self.parameters())))
        return batch


def _toy(**over) -> TwoPhase:
    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS[("synthetic", "demo")], **{"max_epochs": 2, "early_stop_patience": None, **over})
    return TwoPhase(cfg)


@pytest.fixture(scope="module")
def run(small_synthetic):
    model = _toy()
    result = train_and_test(model, small_synthetic, seed=3, device=torch.device("cpu"), contributions=False,
                            robustness=False)
    return model, result, small_synthetic.train.num_batches(model.cfg.batch_size)


def test_each_phase_reads_its_share_of_batches_in_order(run):
    model, _, n = run
    per_epoch = ["heads"] * math.ceil(0.5 * n) + ["main"] * n
    assert [phase for phase, _, _ in model.seen] == per_epoch * 2
    assert model.train_phase is None  # cleared after training


def test_each_phase_steps_only_its_own_parameters(run):
    model, _, n = run
    heads = {n for n, _ in model.named_parameters() if n.startswith("unimodal_head.")}
    seen = model.seen
    k = math.ceil(0.5 * n)
    for start, end, moving in ((0, k, heads), (k, k + n, None)):  # epoch 0: heads pass, then main pass
        before, after = seen[start][1], seen[end][1]
        changed = {name for name in before if not torch.equal(before[name], after[name])}
        if moving is not None:
            assert changed == moving
        else:
            assert changed and not changed & heads


def test_every_gradient_cleared_before_each_batch(run):
    model, _, _ = run
    assert all(cleared for _, _, cleared in model.seen)


def test_history_holds_every_phase(run):
    _, result, _ = run
    record = result["history"][0]
    assert {"heads.total", "total", "task"} <= record["train"].keys()
    assert record["lr"] == {"heads": 0.05, "main": 0.01}


def test_a_parameter_in_no_phase_is_an_error(small_synthetic):
    model = _toy()
    model.phases = lambda: [Phase("heads", lambda: [{"name": "heads", "params": model.heads(), "lr": 0.1}])]
    with pytest.raises(ValueError, match=r"TwoPhase.phases\(\): \d+ trainable parameters are in no phase's groups"):
        train_and_test(model, small_synthetic, seed=3, device=torch.device("cpu"), contributions=False, robustness=False)
