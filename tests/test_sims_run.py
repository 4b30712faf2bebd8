"""CH-SIMS / CH-SIMS v2 end to end on files in the exact released format: runs score with MMSA's
SIMS metrics, the unimodal labels reach a model's loss, and `bench table` shows SIMS columns."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.config import RunConfig
from bench.data import load_dataset
from bench.metrics import sims_regression_metrics
from bench.report import SIMS_COLUMNS, build_tables, load_result_set
from bench.runner import run_sweep
from models.registry import create_model
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
