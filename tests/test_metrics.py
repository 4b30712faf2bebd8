"""MSA and IEMOCAP metrics against hand-computed examples."""

import math
from fractions import Fraction as Fr

import numpy as np
import pytest

from bench.metrics import (
    NonFiniteError, compute_metrics, contribution_utility, iemocap_majority_baseline,
    iemocap_metrics, regression_metrics,
)
from models.constants import METRICS

EX_A = ([-3.6, 0.5, 0.3, 1.5, 0.8, 2.5, 3.4, -0.5], [-2.4, -0.6, 0.0, 0.4, 1.2, 2.0, 2.8, -1.0])
EX_B = ([-0.2, 0.0, 0.0, 0.0, 2.5, -1.5, -0.4], [0.0, 0.0, 0.6, -0.6, 1.8, -1.4, -2.2])
EX_C1 = ([0.5] * 6, [-1.2, 0.0, 0.8, 2.2, -0.4, 3.0])


def approx(x):
    return pytest.approx(float(x), abs=1e-12)


def test_example_a():
    m = regression_metrics(*EX_A)
    assert m["Has0_acc_2"] == approx(Fr(7, 8))
    assert m["Has0_F1_score"] == approx(Fr(191, 220))
    assert m["Non0_acc_2"] == approx(Fr(6, 7)) and m["n_non0"] == 7
    assert m["Non0_F1_score"] == approx(Fr(268, 315))
    assert m["Mult_acc_5"] == approx(Fr(5, 8))
    assert m["Mult_acc_7"] == approx(Fr(1, 2))  # half-up rounding would give 3/8
    assert m["MAE"] == approx(Fr(57, 80))  # clipped values would give 47/80
    assert m["Corr"] == pytest.approx(0.941793499197, abs=1e-12)
    assert m["MulT_F1_non0"] == approx(Fr(272, 315))
    assert m["MAG_acc_2_non0"] == approx(Fr(6, 7)) and m["MAG_F1_non0"] == approx(Fr(268, 315))
    assert m["MAE_non0"] == approx(Fr(27, 35))
    assert m["Corr_non0"] == pytest.approx(0.941613096509, abs=1e-12)


def test_example_b_zero_predictions_and_negative_ties():
    m = regression_metrics(*EX_B)
    assert m["Has0_acc_2"] == approx(Fr(5, 7)) and m["Has0_F1_score"] == approx(Fr(5, 7))
    assert m["Non0_acc_2"] == approx(Fr(4, 5)) and m["n_non0"] == 5
    assert m["Non0_F1_score"] == approx(Fr(82, 105))
    assert m["Mult_acc_5"] == approx(Fr(3, 7)) and m["Mult_acc_7"] == approx(Fr(3, 7))
    assert m["MAE"] == approx(Fr(4, 7))
    assert m["Corr"] == pytest.approx(0.802206416544, abs=1e-12)
    assert m["MulT_F1_non0"] == approx(Fr(86, 105))
    assert m["MAG_acc_2_non0"] == approx(Fr(4, 5)) and m["MAG_F1_non0"] == approx(Fr(4, 5))
    assert m["MAE_non0"] == approx(Fr(19, 25))
    assert m["Corr_non0"] == pytest.approx(0.825848740305, abs=1e-12)


def test_example_c1_constant_prediction():
    m = regression_metrics(*EX_C1)
    assert m["Has0_acc_2"] == approx(Fr(2, 3)) and m["Has0_F1_score"] == approx(Fr(8, 15))
    assert m["Non0_acc_2"] == approx(Fr(3, 5)) and m["Non0_F1_score"] == approx(Fr(9, 20))
    assert m["Mult_acc_5"] == approx(Fr(1, 3)) and m["Mult_acc_7"] == approx(Fr(1, 3))
    assert m["MAE"] == approx(Fr(19, 15))
    assert math.isnan(m["Corr"]) and math.isnan(m["Corr_non0"])  # NaN, never 0
    assert m["MulT_F1_non0"] == approx(Fr(3, 4)) and m["MAE_non0"] == approx(Fr(71, 50))


def test_example_c2_all_labels_zero_warns():
    with pytest.warns(RuntimeWarning, match="all labels are 0"):
        m = regression_metrics([0.3, -0.2, 0.0], [0, 0, 0])
    assert m["Has0_acc_2"] == approx(Fr(2, 3)) and m["Has0_F1_score"] == approx(Fr(4, 5))
    assert m["n_non0"] == 0 and math.isnan(m["Non0_acc_2"]) and math.isnan(m["Non0_F1_score"])
    assert m["Mult_acc_5"] == 1 and m["Mult_acc_7"] == 1
    assert m["MAE"] == approx(Fr(1, 6)) and math.isnan(m["Corr"])


def _example_d():
    logits = np.array([
        [(0.2, 1.0), (1.0, -1.0), (0.5, 0.5), (2.0, 0.0)],
        [(0.0, 0.3), (0.0, 1.2), (1, 0), (1, 0)],
        [(1, 0), (1, 0), (0.1, 0.0), (0.0, 0.4)],
        [(1, 0), (1, 0), (1, 0), (0.0, 2.0)],
        [(0.6, 0.1), (0.0, 0.5), (1, 0), (1, 0)],
        [(1, 0), (1, 0), (-1.0, 1.0), (1, 0)],
    ], dtype=float).reshape(6, 8)
    truth = [0, 1, 2, 3, 0, 2]  # Neu, Hap, Sad, Ang, Neu, Sad
    labels = np.eye(4, dtype=int)[truth]
    return logits, labels


def test_example_d_iemocap():
    logits, labels = _example_d()
    m = iemocap_metrics(logits, labels)
    assert m["Acc_Neutral"] == approx(Fr(2, 3)) and m["F1_Neutral"] == approx(Fr(2, 3))
    assert m["Acc_Happy"] == approx(Fr(5, 6)) and m["F1_Happy"] == approx(Fr(23, 27))
    assert m["Acc_Sad"] == approx(Fr(5, 6)) and m["F1_Sad"] == approx(Fr(22, 27))  # tie -> absent
    assert m["Acc_Angry"] == approx(Fr(5, 6)) and m["F1_Angry"] == approx(Fr(23, 27))
    assert m["acc4"] == approx(Fr(2, 3)) and m["f1w4"] == approx(Fr(2, 3)) and m["ua4"] == approx(Fr(3, 4))


def test_example_d_majority_baseline():
    logits, labels = _example_d()
    train = np.array([[1, 0, 0, 0]] * 5 + [[0, 1, 0, 0]] * 3 + [[0, 0, 1, 0]] * 2)  # all absent-majority, Neutral top
    m = iemocap_majority_baseline(train, labels)
    assert m["Acc_Neutral"] == approx(Fr(2, 3)) and m["F1_Neutral"] == approx(Fr(8, 15))
    assert m["Acc_Happy"] == approx(Fr(5, 6)) and m["F1_Happy"] == approx(Fr(25, 33))
    assert m["Acc_Sad"] == approx(Fr(2, 3)) and m["F1_Sad"] == approx(Fr(8, 15))
    assert m["acc4"] == approx(Fr(1, 3)) and m["f1w4"] == approx(Fr(1, 6)) and m["ua4"] == approx(Fr(1, 4))


def test_non_finite_predictions_fail():
    with pytest.raises(NonFiniteError):
        regression_metrics([0.1, float("nan")], [0.0, 1.0])
    logits, labels = _example_d()
    logits[2, 3] = np.inf
    with pytest.raises(NonFiniteError):
        iemocap_metrics(logits, labels)


def test_every_metric_declares_direction():
    m = compute_metrics("regression", *EX_A)
    for key in m:
        if key not in ("n", "n_non0"):
            assert key in METRICS, key
    assert not METRICS["MAE"].higher_is_better and not METRICS["MAE"].percent
    assert METRICS["Has0_acc_2"].higher_is_better and METRICS["Has0_acc_2"].percent


def test_contribution_utility():
    assert contribution_utility("regression", *EX_A) == approx(-Fr(57, 80))
    logits, labels = _example_d()
    per_emotion = np.mean([2 / 3, 5 / 6, 5 / 6, 5 / 6])
    assert contribution_utility("iemocap", logits, labels) == pytest.approx(per_emotion)
