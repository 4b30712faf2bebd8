"""The one trainer: accumulation, selection on validation only, test once, faults."""

import dataclasses
import math
import warnings

import pytest
import torch

import bench.train as train_mod
from bench.data.base import MSAData, Split
from bench.metrics import compute_metrics
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


class _Watched(Split):
    """A split that logs the name of every public attribute read (batches, labels, ids,
    tensors, take ...) as ("test", name) into its `_log`."""

    def __getattribute__(self, name: str):
        if not name.startswith("_"):
            object.__getattribute__(self, "_log").append(("test", name))
        return object.__getattribute__(self, name)


def _watch_test_split(data: MSAData, log: list) -> MSAData:
    test = _Watched(**{f.name: getattr(data.test, f.name) for f in dataclasses.fields(Split)})
    object.__setattr__(test, "_log", log)
    return MSAData(data.info, data.train, data.valid, test)


@pytest.mark.parametrize("name", [
    "late_fusion",
    "pase",  # epoch hooks: SGM from validation coalitions
    "mfon",  # three stages, each selected on validation, with epoch hooks
])
def test_test_split_is_read_once_after_selection(small_synthetic, name):
    """Every read of the test split comes after the last epoch of the last stage (hooks,
    validation, Shapley and selection included) is over, and it is passed over once
    (robustness included)."""
    log: list = []
    data = _watch_test_split(small_synthetic, log)
    torch.manual_seed(0)
    model = create_model(name, "synthetic", max_epochs=2, early_stop_patience=None)
    res = train_and_test(model, data, seed=1, device=torch.device("cpu"), contributions=True, robustness=True,
                         on_epoch=lambda rec: log.append(("epoch", rec["epoch"])))
    epochs = [i for i, (kind, _) in enumerate(log) if kind == "epoch"]
    reads = [i for i, (kind, _) in enumerate(log) if kind == "test"]
    assert len(epochs) == sum(st["epochs_run"] for st in res.get("stages", [res])) >= 2
    assert reads and min(reads) > max(epochs), log  # nothing before or during training and selection
    assert [log[i][1] for i in reads].count("batches") == 1
    assert len(res["predictions"]["preds"]) == len(small_synthetic.test) and "robustness" in res


def test_a_run_without_test_never_reads_the_test_split(small_synthetic):
    """Tuning trials (`test=False`) train, validate and select without a single test read."""
    log: list = []
    res = train_and_test(_model(max_epochs=2), _watch_test_split(small_synthetic, log), seed=1,
                         device=torch.device("cpu"), test=False)
    assert log == [] and "test" not in res["metrics"] and res["epochs_run"] == 2


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


@pytest.mark.parametrize("script, patience, best, run", [
    ([5, 4, 3, 3.5, 3.2, 1, 0, 0], 2, 2, 5),  # stops 2 epochs after the best, before a better one
    ([5, 4, 6, 3, 7, 8, 0, 0], 2, 3, 6),  # a new best resets the count
    ([5, 5 - 1e-7, 1, 0], 1, 0, 2),  # an improvement under min_delta (1e-6) is none
    ([5, 6, 7, 8], None, 0, 4),  # no patience: every epoch runs
])
def test_early_stopping_stops_patience_epochs_after_the_best(small_synthetic, monkeypatch, script, patience,
                                                             best, run):
    """Validation values scripted per epoch (selection key: valid loss): the run stops exactly
    `patience` epochs after the best, and reports that best."""
    real = train_mod.validate_epoch

    def scripted(run_, s, record):
        valid = real(run_, s, record)
        valid["loss"] = script[record["epoch"]]  # the same dict as record["valid"]
        return valid

    monkeypatch.setattr(train_mod, "validate_epoch", scripted)
    res = train_and_test(_model(max_epochs=len(script), early_stop_patience=patience), small_synthetic, seed=1,
                         device=torch.device("cpu"), contributions=False, robustness=False)
    assert (res["best_epoch"], res["epochs_run"]) == (best, run)
    assert [h["epoch"] for h in res["history"]] == list(range(run))
    assert [h["valid"]["loss"] for h in res["history"]] == script[:run]
    assert res["metrics"]["valid"] == res["history"][best]["valid"] and res["selection"]["value"] == script[best]


def test_early_stopping_in_real_training(small_synthetic):
    res = train_and_test(_model(max_epochs=50, early_stop_patience=2, lr=0.05), small_synthetic, seed=1,
                         device=torch.device("cpu"), contributions=False, robustness=False)
    losses = [h["valid"]["loss"] for h in res["history"]]
    assert res["epochs_run"] == res["best_epoch"] + 3 < 50 and len(losses) == res["epochs_run"]
    assert min(losses) == losses[res["best_epoch"]] and all(v > losses[res["best_epoch"]] - 1e-6 for v in losses[-2:])


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


def _with_unpooling_on(model, split):
    """`model`, whose `encode` also runs max_unpool1d (a kernel torch flags as nondeterministic,
    on the CPU too) on every batch of `split`: in training, validation, coalitions or test."""
    real, ids = model.encode, set(split.ids) if split is not None else set()

    def encode(batch):
        if batch.ids[0] in ids:
            x = torch.zeros(1, 1, 2)
            torch.nn.functional.max_unpool1d(x, torch.zeros_like(x, dtype=torch.long), 1)
        return real(batch)

    model.encode = encode
    return model


@pytest.mark.parametrize("split", ["train", "valid", "test", None])
def test_nondeterministic_ops_are_recorded_wherever_they_run(small_synthetic, split):
    model = _with_unpooling_on(_model(max_epochs=2, early_stop_patience=None),
                               small_synthetic.split(split) if split else None)
    res = train_and_test(model, small_synthetic, seed=1, device=torch.device("cpu"))
    ops = res["nondeterministic_ops"]
    assert len(ops) == (1 if split else 0), ops
    assert all(op.startswith("max_unpooling2d_forward_out does not have a deterministic implementation") for op in ops)


def test_every_coalition_is_scored_from_its_own_masked_pass(small_synthetic):
    """The test metrics and each coalition's robustness metrics equal a separate evaluation of
    the selected model on the masked test split (one masked forward pass per coalition)."""
    model = _model(max_epochs=2, early_stop_patience=None)
    res = train_and_test(model, small_synthetic, seed=1, device=torch.device("cpu"), contributions=False)
    test, labels = small_synthetic.test, small_synthetic.test.labels.numpy()
    coalitions = res["robustness"]["coalitions"]
    assert set(coalitions) == {"t", "a", "v", "ta", "tv", "av", "tav"}
    for key, metrics in coalitions.items():
        preds, loss = train_mod.predict(model, test, torch.device("cpu"), train_mod.eval_batch_size(model),
                                        drop=train_mod.ALL - set(key))
        assert metrics == pytest.approx({**compute_metrics("regression", preds.numpy(), labels), "loss": loss},
                                        rel=1e-5, abs=1e-6), key
    assert res["metrics"]["test"] == pytest.approx(coalitions["tav"], rel=1e-5, abs=1e-6)
    assert coalitions["t"] != pytest.approx(coalitions["tav"], rel=1e-5, abs=1e-6)  # the masks differ


def test_other_warnings_in_evaluation_are_still_shown(small_synthetic):
    model = _model(max_epochs=1)
    real = model.encode

    def encode(batch):
        if not model.training:
            warnings.warn("a model's own warning", UserWarning)
        return real(batch)

    model.encode = encode
    with pytest.warns(UserWarning, match="a model's own warning"):
        res = train_and_test(model, small_synthetic, seed=1, device=torch.device("cpu"))
    assert res["nondeterministic_ops"] == []
