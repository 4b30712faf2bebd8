"""CH-SIMS metrics equal MMSA's own `__eval_sims_regression` (golden written by
tools/reference/sims_metrics.py from MMSA 2.2.1), and are chosen by dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.metrics import compute_metrics, sims_regression_metrics
from models.constants import METRICS

GOLDEN = json.loads((Path(__file__).parent / "golden" / "metrics_sims.json").read_text())
CASES = GOLDEN["cases"]
EXACT = ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score")  # counts over the same classes: equal


@pytest.mark.parametrize("case", range(len(CASES)))
def test_equal_to_mmsa_sims_regression(case):
    c = CASES[case]
    ours = sims_regression_metrics(np.array(c["preds"], dtype=np.float32), np.array(c["labels"], dtype=np.float32))
    ref = c["mmsa_unrounded"]
    assert set(ref) <= set(ours)
    for k in EXACT:
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k
    # MMSA takes the MAE's mean in float32; ours in float64 of the same clipped float32 values
    assert ours["MAE"] == pytest.approx(ref["MAE"], rel=1e-6)
    assert ours["Corr"] == pytest.approx(ref["Corr"], rel=1e-9)
    for k, v in c["mmsa"].items():  # MMSA's printed (4-decimal) numbers follow
        assert round(ours[k], 4) == pytest.approx(v, abs=1.01e-4), k


def test_golden_exercises_clipping_and_bin_edges():
    p = np.concatenate([np.array(c["preds"], dtype=np.float32) for c in CASES])
    y = np.concatenate([np.array(c["labels"], dtype=np.float32) for c in CASES])
    assert (np.abs(p) > 1).sum() > 20
    for edge in (-0.7, -0.1, 0.0, 0.1, 0.7):
        assert (p == np.float32(edge)).sum() >= 3 and (y == np.float32(edge)).sum() >= 1


def test_clipping_and_edges_by_hand():
    # labels -1, -0.1, 0.1, 0.7, 1; predictions beyond the range and exactly at edges
    y = np.array([-1.0, -0.1, 0.1, 0.7, 1.0], dtype=np.float32)
    p = np.array([-3.0, -0.1, 0.1, 0.7000001, 2.0], dtype=np.float32)
    m = sims_regression_metrics(p, y)
    assert m["Mult_acc_5"] == pytest.approx(4 / 5)  # 0.7000001 is in (0.7, 1], 0.7 in (0.1, 0.7]
    assert m["Mult_acc_3"] == 1.0 and m["Mult_acc_2"] == 1.0
    assert m["MAE"] == pytest.approx(float(np.float32(0.7000001) - np.float32(0.7)) / 5, rel=1e-3)


def test_metrics_are_chosen_by_dataset():
    c = CASES[0]
    p, y = np.array(c["preds"], dtype=np.float32), np.array(c["labels"], dtype=np.float32)
    for ds in ("sims", "simsv2"):
        m = compute_metrics("regression", p, y, ds)
        assert m == sims_regression_metrics(p, y) and "Has0_acc_2" not in m
    mosi = compute_metrics("regression", p, y, "mosi")
    assert "Has0_acc_2" in mosi and "Mult_acc_3" not in mosi
    assert compute_metrics("regression", p, y) == mosi
    for k in sims_regression_metrics(p, y):
        assert k == "n" or k in METRICS, k
