"""Scoring, with MMSA's definitions.

Every metric is computed from the same predictions for every model, in float64, at full
precision (MMSA rounds to 4 decimals; we do not). Each metric declares whether higher is
better and whether tables show it x100 (`models.protocol.METRICS`). Variants in circulation (MulT's F1,
MAG-BERT's zero-dropping scores) are stored under their own keys, never mixed with the
canonical ones.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score

from models.constants import EMOTIONS, SIMS_DATASETS

# MMSA metricsTop.py __eval_sims_regression: class i is (ms[i], ms[i+1]] with ms = [-1.01, *edges, 1.01]
SIMS_EDGES = {2: (0.0,), 3: (-0.1, 0.1), 5: (-0.7, -0.1, 0.1, 0.7)}


class NonFiniteError(ValueError):
    """Predictions contain NaN or inf: the run is failed and no metrics are computed."""


def _as_f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _corr(p: np.ndarray, y: np.ndarray) -> float:
    if p.size < 2 or np.all(p == p[0]) or np.all(y == y[0]):
        return math.nan  # constant input: stored as NaN, never replaced by 0
    return float(np.corrcoef(p, y)[0, 1])


def _acc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred)) if y_true.size else math.nan


def _wf1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(f1_score(y_true, y_pred, average="weighted", zero_division=0)) if y_true.size else math.nan


def check_finite(preds) -> None:
    arr = np.asarray(preds, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad.reshape(-1))[0])
        raise NonFiniteError(f"{int(bad.sum())} non-finite prediction values (first at flat index {first})")


def regression_metrics(preds, labels) -> dict[str, float]:
    """MOSI/MOSEI metrics (MMSA utils/metricsTop.py, full precision) plus named variants."""
    p = _as_f64(preds).reshape(-1)
    y = _as_f64(labels).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{p.size} predictions vs {y.size} labels")
    check_finite(p)
    out: dict[str, float] = {"n": int(y.size)}
    out["Has0_acc_2"] = _acc(y >= 0, p >= 0)
    out["Has0_F1_score"] = _wf1(y >= 0, p >= 0)
    nz = y != 0
    out["n_non0"] = int(nz.sum())
    if not nz.any():
        warnings.warn("all labels are 0: Non0 metrics are NaN (n_non0 = 0)", RuntimeWarning, stacklevel=2)
    pn, yn = p[nz], y[nz]
    out["Non0_acc_2"] = _acc(yn > 0, pn > 0)
    out["Non0_F1_score"] = _wf1(yn > 0, pn > 0)
    for k, bound in ((5, 2.0), (7, 3.0)):
        out[f"Mult_acc_{k}"] = _acc(np.round(np.clip(y, -bound, bound)), np.round(np.clip(p, -bound, bound)))
    out["MAE"] = float(np.mean(np.abs(p - y)))
    out["Corr"] = _corr(p, y)
    # variants, each under its own key
    out["MulT_F1_non0"] = _wf1(pn > 0, yn > 0)  # MulT passes (pred, truth): weighted by predicted counts
    out["MAG_acc_2_non0"] = _acc(yn >= 0, pn >= 0)
    out["MAG_F1_non0"] = _wf1(yn >= 0, pn >= 0)
    out["MAE_non0"] = float(np.mean(np.abs(pn - yn))) if nz.any() else math.nan
    out["Corr_non0"] = _corr(pn, yn)
    return out


def sims_classes(x: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """MMSA's SIMS classes: the number of edges below x (class i = (edge[i-1], edge[i]]), compared in
    float32 as MMSA compares its float32 arrays, so a value at an edge falls where MMSA puts it."""
    return np.searchsorted(np.asarray(edges, dtype=np.float32), x.astype(np.float32), side="left")


def sims_regression_metrics(preds, labels) -> dict[str, float]:
    """CH-SIMS / CH-SIMS v2 metrics as MMSA's __eval_sims_regression: predictions and labels clipped
    to [-1, 1], then Acc-2/3/5 on MMSA's bins, weighted F1 of the two classes, MAE and Corr of the
    clipped values (full precision: MMSA rounds to 4 decimals)."""
    p32 = np.clip(np.asarray(preds, dtype=np.float32).reshape(-1), -1.0, 1.0)
    y32 = np.clip(np.asarray(labels, dtype=np.float32).reshape(-1), -1.0, 1.0)
    if p32.shape != y32.shape:
        raise ValueError(f"{p32.size} predictions vs {y32.size} labels")
    check_finite(preds)
    out: dict[str, float] = {"n": int(y32.size)}
    for k, edges in SIMS_EDGES.items():
        out[f"Mult_acc_{k}"] = _acc(sims_classes(y32, edges), sims_classes(p32, edges))
    out["F1_score"] = _wf1(sims_classes(y32, SIMS_EDGES[2]), sims_classes(p32, SIMS_EDGES[2]))
    p, y = _as_f64(p32), _as_f64(y32)
    out["MAE"] = float(np.mean(np.abs(p - y)))
    out["Corr"] = _corr(p, y)
    return out


def _iemocap_arrays(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    lg = _as_f64(logits).reshape(-1, len(EMOTIONS), 2)
    y = np.asarray(labels).reshape(-1, len(EMOTIONS)).astype(np.int64)
    if lg.shape[0] != y.shape[0]:
        raise ValueError(f"{lg.shape[0]} predictions vs {y.shape[0]} labels")
    return lg, y


def _four_way(y: np.ndarray, pred_class: np.ndarray) -> dict[str, float]:
    single = y.sum(1) == 1
    true_class = y.argmax(1)[single]
    pc = pred_class[single]
    return {"n4": int(single.sum()), "acc4": _acc(true_class, pc), "f1w4": _wf1(true_class, pc),
            "ua4": float(balanced_accuracy_score(true_class, pc)) if single.any() else math.nan}


def _per_emotion(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Binary Acc and weighted F1 of each emotion column, and the mean accuracy."""
    out: dict[str, float] = {}
    for e, name in enumerate(EMOTIONS):
        out[f"Acc_{name}"] = _acc(y[:, e], pred[:, e])
        out[f"F1_{name}"] = _wf1(y[:, e], pred[:, e])
    return out | {"mean_acc": float(np.mean([out[f"Acc_{e}"] for e in EMOTIONS]))}


def iemocap_metrics(logits, labels) -> dict[str, float]:
    """Per-emotion binary Acc/weighted F1 (MulT eval_iemocap) and the named 4-way extras."""
    lg, y = _iemocap_arrays(logits, labels)
    check_finite(lg)
    pred = lg.argmax(-1)  # tie -> 0 = absent (numpy first index)
    four_way = _four_way(y, (lg[:, :, 1] - lg[:, :, 0]).argmax(1))  # ties -> first emotion
    return {"n": int(y.shape[0]), **_per_emotion(y, pred), **four_way}


def iemocap_majority_baseline(train_labels, test_labels) -> dict[str, float]:
    """Predict each emotion's train-majority class for every test sample (tie -> absent)."""
    tr = np.asarray(train_labels).reshape(-1, len(EMOTIONS)).astype(np.int64)
    te = np.asarray(test_labels).reshape(-1, len(EMOTIONS)).astype(np.int64)
    majority = np.broadcast_to((tr.mean(0) > 0.5).astype(np.int64), te.shape)  # each emotion's train-majority class
    single_train = tr[tr.sum(1) == 1]
    top = int(np.bincount(single_train.argmax(1), minlength=len(EMOTIONS)).argmax()) if len(single_train) else 0
    return {"n": int(te.shape[0]), **_per_emotion(te, majority), **_four_way(te, np.full(te.shape[0], top))}


def compute_metrics(task: str, preds, labels, dataset: str | None = None) -> dict[str, float]:
    """The metrics of `task`; regression on CH-SIMS / CH-SIMS v2 (`dataset`) uses MMSA's SIMS definitions."""
    if task == "regression":
        return sims_regression_metrics(preds, labels) if dataset in SIMS_DATASETS else regression_metrics(preds, labels)
    if task == "iemocap":
        return iemocap_metrics(preds, labels)
    raise ValueError(f"unknown task '{task}'")


def contribution_utility(task: str, preds, labels) -> float:
    """Utility of a coalition for contribution curves: -MAE (regression) or mean accuracy (IEMOCAP)."""
    if task == "regression":
        return -float(np.mean(np.abs(_as_f64(preds).reshape(-1) - _as_f64(labels).reshape(-1))))
    lg, y = _iemocap_arrays(preds, labels)
    return float(np.mean(lg.argmax(-1) == y))
