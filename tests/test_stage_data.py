"""Data a stage trains on besides the labeled splits (`Stage.data`), loaded by bench/data and
handed over by the trainer; and hooks never reach the test split (TrainState holds none)."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import pytest
import torch

import bench.data.stage_data as stage_data
from bench.data.base import Split
from bench.data.kebr_pretrain import PretrainDataError
from bench.train import TrainingSplits, TrainState, train_and_test
from models import create_model
from models.base import Stage, StageData
from models.late_fusion import PRESETS, LateFusion
from tests.conftest import slice_data


# -- a fake source: tests/test_stage_data.py `load(cfg, directory)` -------------------------------
class Stream:
    """Batches of labeled data tagged 'extra' (ids), cycling for ever."""

    def __init__(self, split: Split):
        self.split = split

    def batches(self, batch_size: int, seed: int) -> Iterator[Any]:
        while True:
            for b in self.split.batches(batch_size):
                b.ids = [f"extra-{i}" for i in b.ids]
                yield b


LOADED: dict[str, Any] = {}


def load(cfg: Any, directory: str) -> Any:
    LOADED["directory"] = directory
    return LOADED["object"]


class WithExtra(LateFusion):
    """Stage 'extra' trains on the fake source's batches; stage 'main' on the labeled ones."""

    as_batches = True

    def stages(self):
        return [Stage("extra", data=StageData("fake", "preset", as_batches=self.as_batches), max_epochs=1),
                Stage("main", max_epochs=1)]

    def forward(self, batch):
        self.seen = getattr(self, "seen", []) + [(self.stage, self.training, batch.ids[0])]
        return super().forward(batch)

    def on_stage_start(self, stage, state):
        self.handed = getattr(self, "handed", {}) | {stage.name: state.stage_data}
        return {}


@pytest.fixture
def fake_source(monkeypatch, small_synthetic):
    monkeypatch.setitem(stage_data.SOURCES, "fake", __name__)
    LOADED["object"] = Stream(slice_data(small_synthetic, 8, 8, 8).train)
    return LOADED["object"]


def _with_extra(**over) -> WithExtra:
    torch.manual_seed(0)
    return WithExtra(dataclasses.replace(PRESETS[("synthetic", "demo")], **{"early_stop_patience": None, **over}))


def test_stage_data_is_loaded_from_its_config_field_and_feeds_that_stage_only(fake_source, small_synthetic):
    model = _with_extra(batch_size=8)
    train_and_test(model, slice_data(small_synthetic, 16, 8, 8), seed=0, device=torch.device("cpu"),
                   contributions=False, robustness=False, log_epochs=False)
    assert LOADED["directory"] == model.cfg.preset
    assert model.handed == {"extra": fake_source, "main": None}
    train_ids = {(stage, ids.startswith("extra-")) for stage, training, ids in model.seen if training}
    assert train_ids == {("extra", True), ("main", False)}  # extra: only the source's batches
    assert sum(1 for s, t, _ in model.seen if s == "extra" and t) == 2  # the labeled split's 2 batches


def test_stage_data_without_as_batches_goes_to_the_hook_only(fake_source, small_synthetic):
    model = _with_extra(batch_size=8)
    model.as_batches = False
    train_and_test(model, slice_data(small_synthetic, 16, 8, 8), seed=0, device=torch.device("cpu"),
                   contributions=False, robustness=False, log_epochs=False)
    assert model.handed["extra"] is fake_source
    assert not any(ids.startswith("extra-") for _, _, ids in model.seen)


def test_unknown_source_and_unset_field_are_errors():
    with pytest.raises(ValueError, match="unknown stage data source 'nope'"):
        stage_data.load_stage_data(StageData("nope", "preset"), PRESETS[("synthetic", "demo")])
    with pytest.raises(ValueError, match="config key 'dataset_dir' is unset"):
        stage_data.load_stage_data(StageData("unlabeled_clips", "dataset_dir"), PRESETS[("synthetic", "demo")])


def test_missing_pretraining_data_fails_before_any_epoch(tmp_path, small_synthetic):
    model = create_model("kebr", "synthetic", pretrain_dir=str(tmp_path / "none"), max_epochs=1)
    epochs: list = []
    with pytest.raises(PretrainDataError) as err:
        train_and_test(model, slice_data(small_synthetic, 8, 8, 8), seed=0, device=torch.device("cpu"),
                       contributions=False, robustness=False, on_epoch=epochs.append)
    assert epochs == [] and err.value.file == str(tmp_path / "none" / "emovoxceleb.pkl")


# -- hooks never reach the test split --------------------------------------------------------------
def reachable(root: Any) -> Iterator[Any]:
    """Every object reachable from `root` through attributes, dict values and sequence items."""
    seen, todo = set(), [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, torch.Tensor)) or obj is None:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend(obj)
        for name in getattr(type(obj), "__slots__", ()):
            todo.append(getattr(obj, name, None))
        if hasattr(obj, "__dict__") and not isinstance(obj, type):
            todo.extend(vars(obj).values())


SPLITS: dict[str, Split] = {}  # the run's splits, held out of the model's reach


class Snooper(LateFusion):
    """Hooks search everything reachable from the state for the run's test split."""

    def _snoop(self, state) -> dict:
        found = [o for o in reachable(state) if o is SPLITS["test"] or (isinstance(o, Split) and o.name == "test")]
        self.found = getattr(self, "found", []) + found
        self.saw_train = getattr(self, "saw_train", False) or any(o is SPLITS["train"] for o in reachable(state))
        self.snoops = getattr(self, "snoops", 0) + 1
        return {}

    def on_epoch_start(self, epoch, state):
        return self._snoop(state)

    def on_epoch_end(self, epoch, state):
        return self._snoop(state)

    def stages(self):
        return [Stage("only")]

    def on_stage_start(self, stage, state):
        return self._snoop(state)


def test_hooks_reach_the_training_split_but_never_the_test_split(small_synthetic):
    data = slice_data(small_synthetic, 16, 8, 8)
    torch.manual_seed(0)
    model = Snooper(dataclasses.replace(PRESETS[("synthetic", "demo")], max_epochs=2, early_stop_patience=None))
    SPLITS.update(test=data.test, train=data.train)
    train_and_test(model, data, seed=0, device=torch.device("cpu"), contributions=False, log_epochs=False)
    assert model.snoops == 5 and model.saw_train and model.found == []  # stage start + 2 x (epoch start, end)


def test_a_train_state_keeps_no_test_split(small_synthetic):
    state = TrainState(None, None, small_synthetic, torch.device("cpu"), 0, False)  # type: ignore[arg-type]
    assert isinstance(state.data, TrainingSplits) and not hasattr(state.data, "test")
    assert state.data.train is small_synthetic.train and state.data.valid is small_synthetic.valid


# -- the trainer hands each training batch to `training_batch` before forward ----------------------
class Pairing(LateFusion):
    """training_batch pairs each batch with the training split's first samples."""

    def training_batch(self, batch, state):
        assert not hasattr(state.data, "test")
        return dataclasses.replace(batch, partners=state.data.train.take(torch.arange(len(batch))))

    def forward(self, batch):
        self.seen = getattr(self, "seen", []) + [(self.training, batch.partners is not None)]
        return super().forward(batch)


def test_training_batches_pass_through_the_training_batch_hook_only(small_synthetic):
    torch.manual_seed(0)
    model = Pairing(dataclasses.replace(PRESETS[("synthetic", "demo")], max_epochs=1, batch_size=8))
    train_and_test(model, slice_data(small_synthetic, 16, 8, 8), seed=0, device=torch.device("cpu"),
                   contributions=False, robustness=False, log_epochs=False)
    assert set(model.seen) == {(True, True), (False, False)}  # training: paired; validation and test: not
