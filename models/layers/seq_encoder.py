"""Sequence encoder for feature sequences (audio, vision; IEMOCAP GloVe text): PaSE's step 2.

Harness decisions where the PaSE paper is silent: Linear(d_in -> d) -> + positions (sinusoidal by
default, or learned) -> dropout -> pre-LN transformer encoder (`layers` x
`torch.nn.TransformerEncoderLayer(norm_first=True, activation="gelu")`, key-padding mask
from the true lengths) -> final LayerNorm -> mean over the valid steps -> Linear(d -> d).

Per layer at d=256, FFN 1024: 789,760 parameters (in-proj 3d^2+3d, out-proj d^2+d, FFN
2*d*ffn+ffn+d, two LayerNorms 4d). The layers are built one by one (not cloned by
`nn.TransformerEncoder`, which would start every layer from the same weights) and each
uses PyTorch's fused inference fast path when it applies.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.protocol import at_least_fp32, lengths_mask

POSITIONS = ("sinusoidal", "learned")


def sinusoidal_table(t: int, d: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(t, d) sine/cosine positions of Vaswani et al. (2017): sin on even, cos on odd features."""
    work = at_least_fp32(dtype)
    pos = torch.arange(t, dtype=work, device=device)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=work, device=device) * (-math.log(10000.0) / d))
    table = torch.zeros(t, d, dtype=work, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return table.to(dtype)


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over the time steps where `valid` (B, T) is True; (B, T, d) -> (B, d)."""
    w = valid.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


def pool_segments(x: torch.Tensor, lengths: torch.Tensor, pool_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool each sequence's valid part into `pool_len` contiguous segments of
    near-equal length: segment j of a length-L clip (L > pool_len) covers
    steps [floor(j L / P), floor((j + 1) L / P)); a clip of L <= P steps keeps its steps.
    Padded steps never enter a segment. Returns ((B, P, d), new lengths min(L, P)).
    One (B, P, T) weight matrix and a batched matmul: no Python loop over samples."""
    b, t, _ = x.shape
    lengths = lengths.clamp(min=0, max=t)
    j = torch.arange(pool_len, device=x.device)
    long = (lengths > pool_len)[:, None]
    start = torch.where(long, (j[None] * lengths[:, None]) // pool_len, j[None])  # (B, P)
    end = torch.where(long, ((j[None] + 1) * lengths[:, None]) // pool_len, torch.minimum(j[None] + 1, lengths[:, None]))
    steps = torch.arange(t, device=x.device)
    inside = (steps[None, None] >= start[..., None]) & (steps[None, None] < end[..., None])  # (B, P, T)
    work = at_least_fp32(x.dtype)
    weights = inside.to(work) / inside.sum(-1, keepdim=True).clamp(min=1)
    pooled = torch.bmm(weights, x.to(work)).to(x.dtype)
    return pooled, torch.minimum(lengths, torch.tensor(pool_len, device=lengths.device))


class SeqEncoder(nn.Module):
    """(B, T, d_in) features + (B,) lengths -> (B, d) utterance vector."""

    def __init__(self, d_in: int, d: int, layers: int, heads: int, ffn: int, dropout: float,
                 pos: str = "sinusoidal", max_len: int = 512):
        super().__init__()
        if pos not in POSITIONS:
            raise ValueError(f"unknown positions '{pos}' (expected one of {POSITIONS})")
        if d % heads:
            raise ValueError(f"encoder width d={d} is not divisible by enc_heads={heads}")
        self.d, self.pos, self.max_len = d, pos, max_len
        self.inp = nn.Linear(d_in, d)
        self.pos_emb = nn.Parameter(torch.randn(max_len, d) * 0.02) if pos == "learned" else None
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(  # built one by one, not cloned (module docstring)
            nn.TransformerEncoderLayer(d, heads, ffn, dropout, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.inp(x)
        if self.pos_emb is not None:
            if t > self.max_len:
                raise ValueError(f"sequence length {t} exceeds the learned positions' max_len {self.max_len}")
            h = h + self.pos_emb[:t].to(h.dtype)
        else:
            h = h + sinusoidal_table(t, self.d, h.device, h.dtype)
        h = self.drop(h)
        valid = lengths_mask(lengths.clamp(min=1), t)  # a zero length would leave a row with no keys
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=~valid)
        return self.proj(masked_mean(self.norm(h), valid))
