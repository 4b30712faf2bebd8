"""MFM (models/mfm.py): parameter counts equal to MMSA 2.2.1's (built by tools/reference/mfm.py
and stored in the golden), the generative and MMD terms only in training, and MMSA's alignment of unequal lengths."""

import json
from pathlib import Path

import pytest
import torch

from models import create_model
from models.base import count_parameters
from models.layers.mmsa_align import avg_pool_align
from models.mfm import mmd

GOLDEN = Path(__file__).parent / "golden_ref" / "mfm.json"


@pytest.mark.parametrize("dataset", ["mosi", "mosei", "sims"])
def test_parameter_counts_equal_mmsa(dataset):
    want = json.loads(GOLDEN.read_text())["reference_parameters"][dataset]
    with torch.device("meta"):
        model = create_model("mfm", dataset, "mmsa")
    assert count_parameters(model) == {"total": want, "trainable": want}


@pytest.fixture(scope="module")
def batch(synthetic):
    return synthetic.train.take(torch.arange(6))


def small_model():
    torch.manual_seed(0)
    return create_model("mfm", "synthetic", "demo")


def test_generative_terms_in_training_only(batch):
    model = small_model()
    model.train()
    parts = model.loss(model(batch), batch)
    assert set(parts) == {"total", "task", "gen", "mmd"}
    assert torch.allclose(parts["total"], parts["task"] + parts["gen"] + parts["mmd"])
    model.eval()
    with torch.no_grad():
        assert set(model.loss(model(batch), batch)) == {"total", "task"}  # MMSA's validation loss: L1 alone


def test_mmd_is_zero_against_its_own_prior_sample():
    z = torch.randn(5, 3)
    gen = torch.Generator().manual_seed(0)
    prior = torch.randn(5, 3, generator=gen)
    original = torch.randn_like
    torch.randn_like = lambda t, *a, **k: prior  # type: ignore[assignment]
    try:
        assert float(mmd(prior)) == pytest.approx(0.0, abs=1e-7)
        assert float(mmd(z)) > 1e-3
    finally:
        torch.randn_like = original  # type: ignore[assignment]


def test_avg_pool_alignment_is_mmsas_strided_mean():
    """MMSA's AlignSubNet avg_pool: pad with the last step to a multiple of the text length,
    then output step j is the mean of input steps j, j + T, ... (the golden proves it on MFM)."""
    x = torch.arange(5.0).view(1, 5, 1)  # 5 steps to 2: padded to [0, 1, 2, 3, 4, 4]
    assert avg_pool_align(x, 2).flatten().tolist() == pytest.approx([(0 + 2 + 4) / 3, (1 + 3 + 4) / 3])
    assert avg_pool_align(x, 7).flatten().tolist() == [0, 1, 2, 3, 4, 4, 4]  # shorter: last step repeated
    assert avg_pool_align(x, 5) is x
