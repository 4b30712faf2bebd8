"""PaSE: audio/vision pooled to `pool_len` segments, valid-length aware."""

import dataclasses

import pytest
import torch

from models import create_model
from models.layers.seq_encoder import pool_segments
from models.pase import PaSE


def _direct(x: torch.Tensor, lengths: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    out = torch.zeros(x.shape[0], p, x.shape[2])
    for b in range(x.shape[0]):
        n = int(lengths[b])
        if n <= p:
            out[b, :n] = x[b, :n]
            continue
        for j in range(p):
            lo, hi = (j * n) // p, ((j + 1) * n) // p
            out[b, j] = x[b, lo:hi].mean(0)
    return out, lengths.clamp(max=p)


@pytest.mark.parametrize("t,p", [(375, 50), (500, 50), (61, 50), (13, 4)])
def test_pooling_matches_a_direct_loop_on_ragged_lengths(t, p):
    g = torch.Generator().manual_seed(t)
    x = torch.randn(7, t, 3, generator=g)
    lengths = torch.tensor([t, t - 1, p + 1, p, p - 1, 1, max(1, t // 3)])
    got, got_len = pool_segments(x, lengths, p)
    want, want_len = _direct(x, lengths, p)
    assert torch.equal(got_len, want_len)
    assert torch.allclose(got, want, atol=1e-6)


def test_padded_steps_never_leak_into_a_segment():
    x = torch.randn(3, 200, 4)
    lengths = torch.tensor([200, 120, 30])
    poisoned = x.clone()
    for b, n in enumerate(lengths.tolist()):
        poisoned[b, n:] = 1e6
    a, _ = pool_segments(x, lengths, 50)
    b, _ = pool_segments(poisoned, lengths, 50)
    assert torch.equal(a, b)
    assert torch.count_nonzero(a[2, 30:]) == 0  # a 30-step clip keeps its 30 steps, the rest is padding


def test_pase_pools_long_sequences_and_keeps_the_parameter_count():
    torch.manual_seed(0)
    pooled = create_model("pase", "synthetic")
    frames = PaSE(dataclasses.replace(pooled.cfg, pool_len=None))
    assert sum(p.numel() for p in pooled.parameters()) == sum(p.numel() for p in frames.parameters())
    x = torch.randn(2, 400, 5)
    lengths = torch.tensor([400, 77])
    h, n = pooled._frames(x, lengths)
    assert h.shape == (2, 50, 5) and n.tolist() == [50, 50]
    h, n = frames._frames(x, lengths)
    assert h is x and n is lengths
    short = torch.randn(2, 50, 5)  # the synthetic data's 50 steps: unchanged, bit for bit
    assert pooled._frames(short, lengths.clamp(max=50))[0] is short


def test_pool_len_must_be_positive():
    with pytest.raises(ValueError, match="pool_len"):
        create_model("pase", "synthetic", pool_len=0)
