"""CH-SIMS / CH-SIMS v2 end to end on files in the exact released format: runs score with MMSA's
SIMS metrics, the unimodal labels reach a model's loss, and `bench table` shows SIMS columns."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from bench.checks import stage_runs, training_step
from bench.config import OptionError, RunConfig
from bench.data import load_dataset
from bench.metrics import sims_regression_metrics
from bench.report import SIMS_COLUMNS, build_tables, load_result_set
from bench.runner import check_compatible, load_data_for, plan_runs, run_sweep
from models.registry import create_model, get_model_entry, list_models
from tests.datagen import SIMS, write_mmsa

SIMS_KEYS = {"Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sims")
    for ds in SIMS:
        write_mmsa(root, ds, "unaligned", sizes=(24, 10, 10))
    return root


@pytest.mark.parametrize("dataset", SIMS)
def test_runs_score_with_mmsa_sims_metrics_and_table_has_sims_columns(tmp_path, data_root, dataset):
    runs = [RunConfig(model=m, dataset=dataset, seed=1111, epochs=1, out_dir=str(tmp_path), data_root=str(data_root),
                      text_encoder="tiny", contributions=False, robustness=False) for m in ("late_fusion", "self_mm")]
    summary = run_sweep(runs)
    assert summary.ok == [f"{dataset}/late_fusion/seed1111", f"{dataset}/self_mm/seed1111"], summary.failed
    for m in ("late_fusion", "self_mm"):
        rec = json.loads((tmp_path / dataset / m / "seed1111.json").read_text())
        test = rec["metrics"]["test"]
        assert SIMS_KEYS <= set(test) and "Has0_acc_2" not in test and "Mult_acc_3" in rec["metrics"]["valid"]
        p = rec["predictions"]
        again = sims_regression_metrics(np.array(p["preds"], dtype=np.float32), np.array(p["labels"], dtype=np.float32))
        assert {k: again[k] for k in SIMS_KEYS} == pytest.approx({k: test[k] for k in SIMS_KEYS}, nan_ok=True)
    tables = build_tables(load_result_set(tmp_path))
    main = next(t for t in tables if t.name == f"table_{dataset}")
    assert [c.key for c in main.columns] == [k for k, _ in SIMS_COLUMNS]
    assert [r.label for r in main.rows if r.kind == "run"] == ["Late fusion", "Self-MM"]


def test_late_fusion_unimodal_heads_learn_the_unimodal_labels(data_root):
    data = load_dataset("sims", data_root=str(data_root), text_input="features")
    batch = data.train.take(torch.arange(8))
    torch.manual_seed(0)
    model = create_model("late_fusion", dataset="sims")
    out = model(batch)
    with_labels = model.loss(out, batch)["unimodal"]
    batch.labels_t = batch.labels_a = batch.labels_v = None
    without = model.loss(out, batch)["unimodal"]
    expected = sum(torch.nn.functional.l1_loss(out.unimodal[m].reshape(-1),
                                               getattr(data.train.take(torch.arange(8)), f"labels_{m}"))
                   for m in "tav") / 3
    assert with_labels.item() == pytest.approx(expected.item(), rel=1e-6)
    assert with_labels.item() != pytest.approx(without.item())



@pytest.mark.parametrize("dataset", SIMS)
@pytest.mark.parametrize("name", list_models())
def test_every_model_has_a_sims_preset_or_declares_the_dataset_na_with_a_reason(data_root, dataset, name):
    """Exactly one of: a CH-SIMS (v2) preset, or an n/a reason, which the runner gives when it refuses the run."""
    entry = get_model_entry(name)
    if dataset not in entry.unsupported:
        assert entry.preset_names(dataset), f"{name}: neither a {dataset} preset nor an n/a reason"
        return
    assert not entry.preset_names(dataset) and len(entry.unsupported[dataset]) > 40
    run = RunConfig(model=name, dataset=dataset, data_root=str(data_root), text_encoder="tiny")
    with pytest.raises(OptionError, match=f"cannot run on '{dataset}': {re.escape(entry.unsupported[dataset])}"):
        plan_runs([run])


WITH_SIMS = [(m, d) for m in list_models() for d in SIMS if get_model_entry(m).preset_names(d)]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "dataset"), WITH_SIMS)
def test_every_sims_preset_takes_a_training_step_on_the_released_layout(data_root, name, dataset):
    """A CH-SIMS (v2) preset resolves as the runner does (--text-encoder tiny), carries the file's
    audio/vision widths, loads its text view (raw_text models: the text_bert fallback) and takes one
    training step per stage on 4 samples at full size and full frame counts."""
    (planned,) = plan_runs([RunConfig(model=name, dataset=dataset, data_root=str(data_root), text_encoder="tiny")])
    cfg, data = planned.model_config, load_data_for(planned)
    check_compatible(cfg, data, name)
    assert tuple(cfg.dims[1:]) == (data.info.dims["a"], data.info.dims["v"]), "preset widths are not the file's"
    torch.manual_seed(0)
    model = get_model_entry(name).builder(cfg)
    batch = data.train.take(torch.arange(4))
    for stage in stage_runs(model):
        out, parts = training_step(model, batch, stage)
        assert out.pred.shape == (4, 1) and torch.isfinite(parts["total"]), (stage, parts)
