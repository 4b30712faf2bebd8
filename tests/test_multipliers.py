"""Training multipliers: a model returns lr / gradient scalings, the trainer applies them."""

import pytest
import torch

from bench.train import apply_multipliers, build_optimizer, train_and_test
from models import create_model
from models.base import Multipliers
from models.late_fusion import LateFusion


def _model(**over):
    torch.manual_seed(0)
    return create_model("late_fusion", "synthetic", **over)


def _two_groups(model):
    """Optimizer with the text branch in group "text" and the rest in "rest", base lrs 1e-3 / 2e-3."""
    text = {id(p) for p in model.modality_params()["t"]}
    return build_optimizer(model, [
        {"name": "text", "params": [p for p in model.parameters() if id(p) in text], "lr": 1e-3},
        {"name": "rest", "params": [p for p in model.parameters() if id(p) not in text], "lr": 2e-3},
    ])


def test_lr_factors_scale_base_lr_and_unnamed_groups_get_base_lr():
    model = _model()
    opt = _two_groups(model)
    assert apply_multipliers(model, opt, Multipliers(lr={"text": 0.5})) == []
    assert [g["lr"] for g in opt.param_groups] == [1e-3 * 0.5, 2e-3]
    apply_multipliers(model, opt, Multipliers(lr={"rest": 0.25}))  # from base_lr, not from the last lr
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 2e-3 * 0.25]
    apply_multipliers(model, opt, None)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 2e-3 * 0.25]  # None leaves the lrs alone


@pytest.mark.parametrize("over,mult,match", [
    ({}, Multipliers(lr={"txt": 0.5}), r"LateFusion.training_multipliers: lr for unknown optimizer groups \['txt'\]"),
    ({}, Multipliers(grad={"x": 0.5}), r"grad for unknown modalities \['x'\]"),
    ({"scheduler": "plateau"}, Multipliers(lr={}), "its schedule 'plateau' would fight it"),
    ({"grad_accum_steps": 2}, Multipliers(grad={"t": 0.5}), "grad_accum_steps=2"),
])
def test_bad_multipliers_are_refused(over, mult, match):
    model = _model(**over)
    with pytest.raises(ValueError, match=match):
        apply_multipliers(model, _two_groups(model), mult)


class _Scaled(LateFusion):
    """late_fusion returning fixed multipliers every epoch."""

    mult: Multipliers

    def training_multipliers(self, epoch, state):
        return self.mult


@pytest.mark.parametrize("mult,frozen", [
    (Multipliers(grad={"t": 0.0}), "t"),  # zero text gradients: only the text branch stays put
    (Multipliers(lr={"all": 0.0}), "tav"),  # lr 0 on the one group: nothing moves
])
def test_the_trainer_applies_them_in_training(small_synthetic, mult, frozen):
    model = _model(max_epochs=2, early_stop_patience=None)
    model.__class__, model.mult = _Scaled, mult
    start = {id(p): p.detach().clone() for p in model.parameters()}
    train_and_test(model, small_synthetic, seed=1, device=torch.device("cpu"), contributions=False, robustness=False)
    for m, params in model.modality_params().items():
        assert all(torch.equal(p, start[id(p)]) for p in params) == (m in frozen), m
