"""What bench and models share that needs no torch (tables and `ls` read it without
importing the models): modalities, settings, emotions, the metric table, and where installed
plugin packages declare their models."""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass

ENTRY_POINT_GROUP = "msabench.models"  # installed packages' entry points that register models
ENV_DISABLE_ENTRY_POINTS = "MSABENCH_DISABLE_ENTRY_POINTS"  # "1": load none (the test suite sets it)


def entry_points() -> list[importlib.metadata.EntryPoint]:
    """The installed packages' `msabench.models` entry points (none when disabled)."""
    if os.environ.get(ENV_DISABLE_ENTRY_POINTS, "").strip() not in ("", "0"):
        return []
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))

MODALITY_NAMES = {"t": "text", "a": "audio", "v": "vision"}
MODALITIES = tuple(MODALITY_NAMES)  # ("t", "a", "v")
SETTINGS = ("aligned", "unaligned")  # ModelConfig.setting: word-aligned or raw-rate audio/vision
SIMS_DATASETS = ("sims", "simsv2")  # CH-SIMS and CH-SIMS v2: labels in [-1, 1], unimodal labels, MMSA's SIMS metrics

EMOTIONS = ("Neutral", "Happy", "Sad", "Angry")  # MulT pickle label order


@dataclass(frozen=True)
class MetricInfo:
    higher_is_better: bool
    percent: bool  # tables show x100 (accuracies, F1); MAE and Corr never
    description: str = ""


METRICS: dict[str, MetricInfo] = {
    "Has0_acc_2": MetricInfo(True, True, "accuracy of p>=0 vs y>=0 over all samples"),
    "Has0_F1_score": MetricInfo(True, True, "weighted F1 of the Has0 split"),
    "Non0_acc_2": MetricInfo(True, True, "accuracy of p>0 vs y>0 on samples with y!=0"),
    "Non0_F1_score": MetricInfo(True, True, "weighted F1 of the Non0 split"),
    "Mult_acc_5": MetricInfo(True, True, "5-class accuracy, clip [-2,2], round half to even; CH-SIMS: MMSA's bins "
                                         "[-1,-0.7] (-0.7,-0.1] (-0.1,0.1] (0.1,0.7] (0.7,1]"),
    "Mult_acc_7": MetricInfo(True, True, "7-class accuracy, clip [-3,3], round half to even"),
    "MAE": MetricInfo(False, False, "mean absolute error, unclipped (CH-SIMS: of values clipped to [-1,1], as MMSA)"),
    "Corr": MetricInfo(True, False, "Pearson r, unclipped (CH-SIMS: of values clipped to [-1,1], as MMSA)"),
    "Mult_acc_2": MetricInfo(True, True, "CH-SIMS 2-class accuracy, MMSA bins [-1,0] (0,1], clip [-1,1]"),
    "Mult_acc_3": MetricInfo(True, True, "CH-SIMS 3-class accuracy, MMSA bins [-1,-0.1] (-0.1,0.1] (0.1,1]"),
    "F1_score": MetricInfo(True, True, "CH-SIMS weighted F1 of the Mult_acc_2 classes"),
    "MulT_F1_non0": MetricInfo(True, True, "MulT eval_mosei_senti F1 (arguments swapped)"),
    "MAG_acc_2_non0": MetricInfo(True, True, "MAG-BERT: zeros dropped, threshold >=0"),
    "MAG_F1_non0": MetricInfo(True, True, "MAG-BERT: zeros dropped, threshold >=0, weighted F1"),
    "MAE_non0": MetricInfo(False, False, "MAE on y!=0 (MAG-BERT, PaSE code)"),
    "Corr_non0": MetricInfo(True, False, "Pearson r on y!=0 (MAG-BERT, PaSE code)"),
    "loss": MetricInfo(False, False, "task loss (L1 or CE), the validation selection key"),
    "mean_acc": MetricInfo(True, True, "IEMOCAP: mean of the 4 per-emotion accuracies"),
    "acc4": MetricInfo(True, True, "IEMOCAP 4-way accuracy (single-emotion samples)"),
    "f1w4": MetricInfo(True, True, "IEMOCAP 4-way weighted F1"),
    "ua4": MetricInfo(True, True, "IEMOCAP 4-way unweighted accuracy (mean recall)"),
}
for _e in EMOTIONS:
    METRICS[f"Acc_{_e}"] = MetricInfo(True, True, f"IEMOCAP {_e}: binary accuracy")
    METRICS[f"F1_{_e}"] = MetricInfo(True, True, f"IEMOCAP {_e}: weighted F1")
