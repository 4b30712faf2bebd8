"""The one trainer: accumulation, selection on validation only, test once, faults."""

import math

import pytest
import torch

import bench.train as train_mod
from bench.train import TrainingError, train_and_test
from models import create_model


def _model(**over):
    torch.manual_seed(0)
    return create_model("late_fusion", "synthetic", **over)


def test_accumulation_applies_trailing_batches(small_synthetic):
    # 96 samples, batch 20 -> 5 batches; accumulating 2 -> steps after batches 2, 4 and the trailing 5th
    steps = []
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(lambda opt, a, k: steps.append(1))
    try:
        train_and_test(_model(batch_size=20, grad_accum_steps=2, max_epochs=2, early_stop_patience=None),
                       small_synthetic, seed=1, device=torch.device("cpu"), contributions=False)
    finally:
        handle.remove()
    assert len(steps) == 2 * 3


def test_test_split_is_scored_once_after_selection(small_synthetic, monkeypatch):
    calls = []
    real = train_mod.evaluate

    def spy(model, split, *a, **k):
        calls.append(split is small_synthetic.test)
        return real(model, split, *a, **k)

    monkeypatch.setattr(train_mod, "evaluate", spy)
    res = train_and_test(_model(max_epochs=3, early_stop_patience=None), small_synthetic, seed=1,
                         device=torch.device("cpu"), contributions=True)
    assert calls.count(True) == 1 and calls[-1] is True  # test: once, and last
    assert res["selected_on"] == "valid" and res["epochs_run"] == 3
    assert len(res["predictions"]["preds"]) == len(small_synthetic.test)


def test_best_validation_state_is_the_one_tested(small_synthetic):
    model = _model(max_epochs=5, early_stop_patience=None, lr=5e-3)
    snapshots = {}
    model.on_epoch_end = lambda epoch, state: snapshots.update(
        {epoch: {k: v.clone() for k, v in state.model.state_dict().items()}}) or {}
    res = train_and_test(model, small_synthetic, seed=3, device=torch.device("cpu"), contributions=False)
    losses = [h["valid"]["loss"] for h in res["history"]]
    assert res["best_epoch"] == min(range(len(losses)), key=lambda e: (losses[e], e))
    check = _model()
    check.load_state_dict(snapshots[res["best_epoch"]])
    preds, _ = train_mod.predict(check, small_synthetic.test, torch.device("cpu"), 32)
    assert torch.allclose(preds.reshape(-1), torch.tensor(res["predictions"]["preds"]), atol=1e-6)
    assert res["metrics"]["valid"] == res["history"][res["best_epoch"]]["valid"]


def test_early_stopping(small_synthetic):
    res = train_and_test(_model(max_epochs=50, early_stop_patience=2, lr=0.05), small_synthetic, seed=1,
                         device=torch.device("cpu"), contributions=False)
    assert res["epochs_run"] == res["best_epoch"] + 3 or res["epochs_run"] == 50


def test_history_contributions_are_exact_shapley(small_synthetic):
    res = train_and_test(_model(max_epochs=1), small_synthetic, seed=1, device=torch.device("cpu"))
    c = res["history"][0]["contributions"]
    assert c["split"] == "valid" and set(c["utility"]) == {"", "t", "a", "v", "ta", "tv", "av", "tav"}
    assert sum(c["shapley"].values()) == pytest.approx(c["utility"]["tav"] - c["utility"][""])
    assert c["utility"]["tav"] == pytest.approx(-res["history"][0]["valid"]["MAE"])


def test_non_finite_loss_stops_with_details(small_synthetic):
    model = _model(max_epochs=3)
    real_loss = model.loss
    count = {"n": 0}

    def bad_loss(out, batch):
        count["n"] += 1
        parts = real_loss(out, batch)
        if count["n"] == 7:
            parts["total"] = parts["total"] * float("nan")
        return parts

    model.loss = bad_loss
    with pytest.raises(TrainingError) as info:
        train_and_test(model, small_synthetic, seed=1, device=torch.device("cpu"), contributions=False)
    d = info.value.details
    assert d["epoch"] == 2 and d["batch"] == 0 and d["step"] == 6  # 3 batches of 32 per epoch
    assert math.isfinite(d["last_valid_metrics"]["MAE"])


def test_parameter_counts_receiving_gradient(small_synthetic):
    model = _model(max_epochs=1)
    model.unused = torch.nn.Parameter(torch.zeros(10))
    res = train_and_test(model, small_synthetic, seed=1, device=torch.device("cpu"), contributions=False)
    p = res["params"]
    assert p["total"] == p["trainable"] and p["with_grad"] == p["total"] - 10


def test_same_seed_is_bit_identical_on_cpu(small_synthetic):
    a = train_and_test(_model(max_epochs=2), small_synthetic, seed=5, device=torch.device("cpu"), contributions=False)
    b = train_and_test(_model(max_epochs=2), small_synthetic, seed=5, device=torch.device("cpu"), contributions=False)
    assert a["predictions"]["preds"] == b["predictions"]["preds"]
    assert a["metrics"]["test"] == b["metrics"]["test"]
