"""Staged training in the one trainer (bench/train.py's stages): a toy
two-stage model shows the freeze, the hand-over of the *selected* state, per-stage
selection on validation, the stage records, and that the test split is scored once."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import bench.train as train_mod
from bench.train import TrainingError, train_and_test
from models.base import Freeze, Stage
from models.late_fusion import PRESETS, LateFusion


class TwoStage(LateFusion):
    """Stage 'text': text branch + its unimodal head on the text-only loss (pred = text's
    unimodal prediction); stage 'fusion': everything but the text branch, on the fused loss."""

    def stages(self):
        text = [*self.branch["t"].parameters(), *self.unimodal_head["t"].parameters()]
        rest = [p for p in self.parameters() if all(p is not q for q in text)]
        return [
            Stage("text", trainable=lambda: text, max_epochs=4, early_stop_patience=None,
                  selection_metric="MAE", contributions=False),
            Stage("fusion", trainable=lambda: rest, loss=self.fusion_loss, selection_metric="Corr"),
        ]

    def forward(self, batch):
        out = super().forward(batch)
        if self.stage == "text":
            out.pred = out.unimodal["t"]
        return out

    def fusion_loss(self, output, batch):
        task = torch.nn.functional.l1_loss(output.pred.reshape(-1), batch.labels.reshape(-1))
        return {"total": task, "task": task}

    def on_stage_start(self, stage, state):
        self.seen_at_start = getattr(self, "seen_at_start", {})
        self.seen_at_start[stage.name] = {k: v.clone() for k, v in self.state_dict().items()}
        return {"started": stage.name}


def _toy(**over) -> TwoStage:
    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS[("synthetic", "demo")], **{"max_epochs": 3, "early_stop_patience": None, **over})
    return TwoStage(cfg)


@pytest.fixture
def trained(small_synthetic):
    model = _toy()
    snapshots: list[tuple[str, int, dict]] = []
    model_ref = model

    def on_epoch(record):
        snapshots.append((record["stage"], record["epoch"],
                          {k: v.clone() for k, v in model_ref.state_dict().items()}))

    result = train_and_test(model, small_synthetic, seed=7, device=torch.device("cpu"), on_epoch=on_epoch)
    return model, result, snapshots


def test_stage_records_and_times(trained):
    _, res, _ = trained
    names = [s["name"] for s in res["stages"]]
    assert names == ["text", "fusion"]
    text, fusion = res["stages"]
    assert text["epochs_run"] == 3  # the stage asks for 4, the config's max_epochs (--epochs) caps it at 3
    assert fusion["epochs_run"] == 3
    assert text["selection"]["key"] == "MAE" and text["selection"]["higher_is_better"] is False
    assert fusion["selection"]["key"] == "Corr" and res["selection"] == fusion["selection"]
    assert all(r["stage"] == "text" and "contributions" not in r for r in text["history"])
    assert all(r["stage"] == "fusion" and "contributions" in r for r in fusion["history"])
    assert res["history"] == fusion["history"] and res["best_epoch"] == fusion["best_epoch"]
    assert text["info"] == {"started": "text"}
    assert res["time"]["stages_s"] == {"text": text["train_s"], "fusion": fusion["train_s"]}
    assert res["time"]["train_s"] == pytest.approx(text["train_s"] + fusion["train_s"])
    assert text["params_trainable"] + fusion["params_trainable"] == res["params"]["total"]
    assert res["params"]["trainable"] == res["params"]["total"]  # flags restored after the stages


def test_each_stage_selects_on_validation_and_hands_over_its_selected_state(trained):
    model, res, snaps = trained
    text = res["stages"][0]
    maes = [r["valid"]["MAE"] for r in text["history"]]
    best = min(range(len(maes)), key=lambda i: (maes[i], i))
    assert text["best_epoch"] == best and text["selection"]["value"] == maes[best]
    selected = next(s for st, e, s in snaps if st == "text" and e == best)
    start = model.seen_at_start["fusion"]
    assert all(torch.equal(selected[k], start[k]) for k in selected)
    # the fusion stage's selected state is the one the model ends with (and was tested with)
    fusion = res["stages"][1]
    corrs = [r["valid"]["Corr"] for r in fusion["history"]]
    assert fusion["best_epoch"] == max(range(len(corrs)), key=lambda i: (corrs[i], -i))
    final = next(s for st, e, s in snaps if st == "fusion" and e == fusion["best_epoch"])
    assert all(torch.equal(final[k], v) for k, v in model.state_dict().items())


def test_each_stage_freezes_what_it_does_not_train(trained):
    model, res, snaps = trained
    start = model.seen_at_start
    text_keys = [k for k in start["text"] if k.startswith(("branch.t.", "unimodal_head.t."))]
    other = [k for k in start["text"] if k not in text_keys]
    # stage text: only the text branch moved
    after_text = start["fusion"]
    assert all(torch.equal(start["text"][k], after_text[k]) for k in other)
    assert any(not torch.equal(start["text"][k], after_text[k]) for k in text_keys)
    # stage fusion: the text branch stayed at its stage-1 selected state
    end = model.state_dict()
    assert all(torch.equal(after_text[k], end[k]) for k in text_keys)
    assert any(not torch.equal(after_text[k], end[k]) for k in other)


def test_test_split_scored_once_after_the_last_stage(small_synthetic, monkeypatch):
    calls = []
    real = train_mod.evaluate
    model = _toy(max_epochs=2)

    def spy(m, split, *a, **k):
        calls.append((model.stage, split is small_synthetic.test))
        return real(m, split, *a, **k)

    monkeypatch.setattr(train_mod, "evaluate", spy)
    train_and_test(model, small_synthetic, seed=1, device=torch.device("cpu"))
    assert [c for c in calls if c[1]] == [("fusion", True)] and calls[-1] == ("fusion", True)


def test_no_test_split_at_all_when_asked(small_synthetic, monkeypatch):
    seen = []
    real = train_mod.evaluate
    monkeypatch.setattr(train_mod, "evaluate", lambda m, split, *a, **k: seen.append(split) or real(m, split, *a, **k))
    from models import create_model

    res = train_and_test(create_model("late_fusion", "synthetic", max_epochs=2), small_synthetic, seed=1,
                         device=torch.device("cpu"), test=False)
    assert all(s is not small_synthetic.test for s in seen)
    assert "test" not in res["metrics"] and "predictions" not in res and "robustness" not in res
    assert res["metrics"]["valid"]


def test_on_epoch_exception_propagates(small_synthetic):
    from models import create_model

    class Stop(Exception):
        pass

    def on_epoch(record):
        if record["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        train_and_test(create_model("late_fusion", "synthetic", max_epochs=5), small_synthetic, seed=1,
                       device=torch.device("cpu"), on_epoch=on_epoch)


def test_a_run_with_no_completed_epoch_is_an_error(small_synthetic):
    with pytest.raises(TrainingError, match="no training epoch completed"):
        train_and_test(_toy(max_epochs=0), small_synthetic, seed=1, device=torch.device("cpu"))


def test_never_finite_validation_is_an_error(small_synthetic, monkeypatch):
    from models import create_model

    real = train_mod.compute_metrics
    monkeypatch.setattr(train_mod, "compute_metrics", lambda *a, **k: {**real(*a, **k), "MAE": float("nan")})
    with pytest.raises(TrainingError, match="never finite"):
        train_and_test(create_model("late_fusion", "synthetic", max_epochs=2, selection_metric="MAE"),
                       small_synthetic, seed=1, device=torch.device("cpu"), contributions=False)


def test_unstaged_models_record_no_stage_fields(small_synthetic):
    from models import create_model

    res = train_and_test(create_model("late_fusion", "synthetic", max_epochs=1), small_synthetic, seed=1,
                         device=torch.device("cpu"), contributions=False)
    assert "stages" not in res and "stages_s" not in res["time"]
    assert all("stage" not in r for r in res["history"])


def test_a_stage_can_set_its_own_batch_size(small_synthetic):
    class Sized(TwoStage):
        def stages(self):
            first, second = super().stages()
            return [dataclasses.replace(first, batch_size=48), second]

    torch.manual_seed(0)
    model = Sized(dataclasses.replace(PRESETS[("synthetic", "demo")], max_epochs=1, batch_size=32))
    sizes = []
    real = model.forward
    model.forward = lambda b: (model.training and sizes.append((model.stage, len(b)))) or real(b)
    train_and_test(model, small_synthetic, seed=1, device=torch.device("cpu"), contributions=False, robustness=False)
    assert [n for st, n in sizes if st == "text"] == [48, 48]  # 96 training samples
    assert [n for st, n in sizes if st == "fusion"] == [32, 32, 32]


def test_a_declared_freeze_holds_its_parameters_for_the_first_epochs(small_synthetic):
    class Frozen(TwoStage):
        def stages(self):
            first, second = super().stages()
            return [dataclasses.replace(first, freeze=Freeze(self.branch["t"].parameters, 2, "branch_frozen")), second]

    model = Frozen(dataclasses.replace(PRESETS[("synthetic", "demo")], max_epochs=4, early_stop_patience=None))
    seen, start = [], model.branch["t"][1].weight.detach().clone()
    train_and_test(model, small_synthetic, seed=1, device=torch.device("cpu"), contributions=False, robustness=False,
                   on_epoch=lambda r: seen.append((r["stage"], r.get("branch_frozen"),
                                                   model.branch["t"][1].weight.detach().clone())))
    text = [(frozen, w) for stage, frozen, w in seen if stage == "text"]
    assert [f for f, _ in text] == [True, True, False, False]
    assert torch.equal(text[0][1], start) and torch.equal(text[1][1], start)  # frozen: no step
    assert not torch.equal(text[2][1], start)  # then it trains
    assert all(f is None for stage, f, _ in seen if stage == "fusion")
