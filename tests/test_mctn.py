"""MCTN (models/mctn.py): the parameter count equal to MMSA 2.2.1's (built by
tools/reference/mctn.py and stored in the golden), the batch-axis recurrence MMSA runs
(recorded as batch-dependent), and the translation losses in training only."""

import json
from pathlib import Path

import pytest
import torch

from models import create_model
from models.base import count_parameters

GOLDEN = Path(__file__).parent / "golden_ref" / "mctn.json"


@pytest.mark.parametrize("dataset", ["mosi", "mosei"])
def test_parameter_count_equals_mmsa(dataset):
    want = json.loads(GOLDEN.read_text())["reference_parameters"]["mosi"]  # MOSEI: the same widths (text 768)
    with torch.device("meta"):
        model = create_model("mctn", dataset, "mmsa")
    assert count_parameters(model) == {"total": want, "trainable": want}


@pytest.fixture(scope="module")
def batch(synthetic):
    return synthetic.train.take(torch.arange(6))


def small_model():
    torch.manual_seed(0)
    return create_model("mctn", "synthetic", "demo")


def test_prediction_depends_on_the_other_samples_and_is_declared(synthetic, batch):
    """MMSA's LSTMs step over the batch axis: the same three samples, alone or with three more,
    are predicted differently; the model says so in its summary (recorded in result files)."""
    model = small_model().eval()
    with torch.no_grad():
        with_others = model(batch).pred[:3]
        alone = model(synthetic.train.take(torch.arange(3))).pred
    assert model.summary()["batch_dependent_eval"] is True
    assert not torch.allclose(with_others, alone, atol=1e-4)


def test_translation_losses_in_training_only(batch):
    model = small_model()
    model.train()
    parts = model.loss(model(batch), batch)
    assert set(parts) == {"total", "task", "translation"}
    assert torch.allclose(parts["total"], parts["task"] + parts["translation"])
    model.eval()
    with torch.no_grad():
        assert set(model.loss(model(batch), batch)) == {"total", "task"}
