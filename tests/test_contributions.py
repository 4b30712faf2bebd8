"""On `synthetic`, trained models' exact Shapley values recover the planted order t > a > v."""

import pytest
import torch

from bench.train import train_and_test
from models import create_model


def _trained_shapley(name, synthetic, **over):
    torch.manual_seed(1111)
    model = create_model(name, "synthetic", **over)
    res = train_and_test(model, synthetic, seed=1111, device=torch.device("cpu"))
    return res["history"][res["best_epoch"]]["contributions"]["shapley"], res


def test_late_fusion_ranks_text_audio_vision(synthetic):
    shapley, res = _trained_shapley("late_fusion", synthetic)
    assert shapley["t"] > shapley["a"] > shapley["v"], shapley
    # and every epoch after the first agrees
    for h in res["history"][1:]:
        s = h["contributions"]["shapley"]
        assert s["t"] > s["a"] > s["v"], (h["epoch"], s)


@pytest.mark.slow
def test_mult_ranks_text_audio_vision(synthetic):
    shapley, _ = _trained_shapley("mult", synthetic, max_epochs=1)
    assert shapley["t"] > shapley["a"] > shapley["v"], shapley
