"""The one "new best" rule (models.protocol.improves) and its three users agreeing on it."""

import math
from types import SimpleNamespace

import pytest

from bench.train import _Selection
from models import create_model
from models.pase import PhaseSwitch
from models.protocol import improves

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("value,best,higher,min_delta,expected", [
    (0.7, None, False, 1e-6, True),  # the first finite value is the first best
    (NAN, None, False, 1e-6, False),  # ... a non-finite one is not
    (INF, None, True, 1e-6, False),
    (-INF, None, False, 1e-6, False),
    (0.5, 0.5, False, 1e-6, False),  # a tie is no improvement
    (0.5, 0.5, True, 1e-6, False),
    (0.5, 0.5, False, 0.0, True),  # ... unless min_delta is 0 (the bound is inclusive)
    (0.5 - 0.25, 0.5, False, 0.25, True),  # exactly min_delta better: improves
    (0.5 - 0.125, 0.5, False, 0.25, False),  # less than min_delta better: not
    (0.5 + 0.25, 0.5, True, 0.25, True),
    (0.5 + 0.125, 0.5, True, 0.25, False),
    (0.4, 0.5, False, 1e-6, True),  # direction: lower is better ...
    (0.4, 0.5, True, 1e-6, False),  # ... or higher is
    (0.6, 0.5, True, 1e-6, True),
    (0.6, 0.5, False, 1e-6, False),
    (NAN, 0.5, False, 1e-6, False),  # NaN never improves
    (NAN, 0.5, True, 1e-6, False),
    (0.1, INF, False, 1e-6, True),  # (only reachable by passing a non-finite best)
])
def test_improves(value, best, higher, min_delta, expected):
    assert improves(value, best, higher=higher, min_delta=min_delta) is expected


def test_values_are_compared_as_given_rounding_is_the_trainers():
    # the trainer rounds the validation loss to val_loss_decimals=4 before selection sees it:
    # 0.50004 and 0.5 are then a tie; unrounded they differ by 4e-5 >= min_delta 1e-6
    assert not improves(round(0.49996, 4), round(0.5, 4), higher=False, min_delta=1e-6)
    assert improves(0.49996, 0.5, higher=False, min_delta=1e-6)


SCRIPT = [NAN, 1.0, 1.0, 1.0 - 5e-7, 0.9, 0.9, INF, 0.5]  # non-finite first, ties, sub-min_delta, gains


def _trainer_since_best(values: list[float], higher: bool, min_delta: float) -> list[int]:
    sel, out = _Selection(higher, min_delta), []
    model = create_model("late_fusion", "synthetic")
    for epoch, v in enumerate(values):
        sel.update(v, epoch, {}, model)
        out.append(sel.since_best)
    return out


@pytest.mark.parametrize("metric,values", [("loss", SCRIPT), ("Corr", [-v for v in SCRIPT])])
def test_clgsis_record_of_early_stopping_is_the_trainers(metric, values):
    model = create_model("clgsi", "synthetic", selection_metric=metric)
    seen = []
    for epoch, v in enumerate(values):
        model.on_epoch_end(epoch, SimpleNamespace(valid_metrics={metric: v}))
        seen.append(model._since_best)
    assert seen == _trainer_since_best(values, metric != "loss", model.cfg.min_delta)


def test_pase_phase_switch_plateau_is_the_trainers_lower_is_better():
    switch = PhaseSwitch(patience=99, min_delta=1e-6, max_warmup=99)
    seen = []
    for v in SCRIPT:
        switch.observe(v)
        seen.append(switch.since_best)
    assert seen == _trainer_since_best(SCRIPT, False, 1e-6) == [1, 0, 1, 2, 0, 1, 2, 0]
