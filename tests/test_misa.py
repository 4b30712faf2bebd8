"""MISA: MMSA's parameter count, the text lengths MMSA packs audio/vision with, its loss weights."""

import json
from pathlib import Path

import pytest
import torch

from models import create_model
from models.protocol import Batch

GOLDEN = Path(__file__).parent / "golden_ref" / "misa.json"


def test_parameter_counts_equal_mmsa():
    """MMSA's MISA built at its MOSI size by tools/reference/misa.py (bert-base, 768/5/20, hidden 128)."""
    mmsa = json.loads(GOLDEN.read_text())["mmsa_parameters_mosi"]
    with torch.device("meta"):
        model = create_model("misa", "mosi", "mmsa", text_encoder="bert-base")
    total = sum(p.numel() for p in model.parameters())
    with_grad = sum(p.numel() for n, p in model.named_parameters() if not any(k in n for k in model.no_grad_params))
    assert (total, with_grad) == (mmsa["total"], mmsa["with_grad"])


def _batch(audio_steps: int = 10) -> Batch:
    gen = torch.Generator().manual_seed(0)
    lengths = [5, 7, 3]
    ids = torch.randint(5, 60, (3, 8), generator=gen)
    mask = (torch.arange(8) < torch.tensor(lengths)[:, None]).long()
    return Batch(audio=torch.randn(3, audio_steps, 5, generator=gen), vision=torch.randn(3, audio_steps, 20, generator=gen),
                 audio_lengths=torch.full((3,), audio_steps), vision_lengths=torch.full((3,), audio_steps),
                 labels=torch.randn(3, generator=gen), index=torch.arange(3),
                 text_ids=ids * mask, text_mask=mask, text_segment=torch.zeros_like(ids))


@pytest.mark.parametrize("rnn_lengths,reads_tail", [("text", False), ("own", True)])
def test_audio_vision_packed_with_text_lengths(rnn_lengths, reads_tail):
    """MMSA packs audio and vision with the text lengths: frames after a sample's text length
    are never read ("text"); with "own" they are."""
    torch.manual_seed(0)
    model = create_model("misa", "synthetic", "demo", text_vocab_size=64, rnn_lengths=rnn_lengths).eval()
    batch = _batch()
    changed = _batch()
    changed.audio[:, 7:] += 1.0  # beyond every text length (max 7)
    changed.vision[:, 7:] -= 1.0
    with torch.no_grad():
        same = torch.allclose(model(batch).pred, model(changed).pred)
    assert same != reads_tail


def test_loss_weights_and_parts():
    """total = MSE task + diff_weight x diff + sim_weight x CMD + recon_weight x recon (MMSA's sum)."""
    torch.manual_seed(0)
    model = create_model("misa", "synthetic", "demo", text_vocab_size=64, diff_weight=0.7, sim_weight=0.2,
                         recon_weight=0.4).eval()
    batch = _batch()
    out = model(batch)
    parts = model.loss(out, batch)
    assert torch.allclose(parts["task"], ((out.pred.reshape(-1) - batch.labels) ** 2).mean())
    assert all(float(parts[k].detach()) > 0 for k in ("diff", "sim", "recon"))
    expected = parts["task"] + 0.7 * parts["diff"] + 0.2 * parts["sim"] + 0.4 * parts["recon"]
    assert torch.allclose(parts["total"], expected)
