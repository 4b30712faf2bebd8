"""ALMT: parameter counts against MMSA's own build, the position-table guard, the loss switch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.registry import create_model

GOLDEN = Path(__file__).parent / "golden_ref" / "almt.json"


def non_bert_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("text."))


@pytest.mark.parametrize("dataset", ["mosi", "mosei", "sims"])
def test_parameter_count_equals_mmsa(dataset: str) -> None:
    """Everything outside BERT: the count of MMSA's ALMT built from its own config row
    (tools/reference/almt.py records it in the golden's metadata)."""
    expected = json.loads(GOLDEN.read_text())["mmsa_params_without_bert"][dataset]
    with torch.device("meta"):  # bert-base-uncased shapes, no memory
        model = create_model("almt", dataset, "mmsa", text_encoder="bert-base")
    assert non_bert_params(model) == expected


def _batch(model_cfg, audio_steps: int):
    from models.protocol import Batch

    b, t = 2, model_cfg.feature_length[0]
    return Batch(audio=torch.randn(b, audio_steps, model_cfg.dims[1]), vision=torch.randn(b, 10, model_cfg.dims[2]),
                 audio_lengths=torch.tensor([audio_steps, 3]), vision_lengths=torch.tensor([10, 4]),
                 labels=torch.tensor([0.5, -1.0]), index=torch.arange(b),
                 text_ids=torch.randint(0, 64, (b, t)), text_mask=torch.ones(b, t, dtype=torch.long),
                 text_segment=torch.zeros(b, t, dtype=torch.long))


def test_sequence_longer_than_position_table_is_named() -> None:
    model = create_model("almt", "synthetic", "demo")
    model(_batch(model.cfg, 50))  # the table's length fits
    with pytest.raises(ValueError, match="feature_length"):
        model(_batch(model.cfg, 51))


def test_loss_is_mse_unless_switched() -> None:
    torch.manual_seed(0)
    model = create_model("almt", "synthetic", "demo").eval()
    batch = _batch(model.cfg, 20)
    out = model(batch)
    err = out.pred.reshape(-1) - batch.labels
    assert torch.allclose(model.loss(out, batch)["total"], (err ** 2).mean())
    model.cfg.loss = "l1"
    assert torch.allclose(model.loss(out, batch)["total"], err.abs().mean())
