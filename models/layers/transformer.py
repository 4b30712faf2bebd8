"""MulT's cross-modal transformer (fairseq style, pre-LN), on fused attention.

Layout is batch-first (B, T, d). Attention runs through
`torch.nn.functional.scaled_dot_product_attention`, so no attention map is materialised
or returned (MMSA computes head-averaged maps and discards them). Parameter shapes and
initialisation follow MMSA `models/subNets/transformers_encoder/` exactly, so parameter
counts match: per layer 3d^2+3d (in-proj) + d^2+d (out-proj) + 8d^2+5d (FFN 4d) + 4d (2 LN).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def _linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    m = nn.Linear(d_in, d_out, bias)
    nn.init.xavier_uniform_(m.weight)
    if bias:
        nn.init.zeros_(m.bias)
    return m


def future_mask(t_q: int, t_k: int, device: torch.device) -> torch.Tensor:
    """MulT's causal mask as a bool (True = attend): query i sees keys j < i + 1 + |t_k - t_q|."""
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(abs(t_k - t_q))


def sinusoidal_positions(x: torch.Tensor) -> torch.Tensor:
    """fairseq SinusoidalPositionalEmbedding as MulT uses it: positions 1..T, padding_idx 0.

    A step whose first feature is exactly 0 counts as padding and gets a zero embedding
    (MulT feeds `x[:, :, 0]` as the "tokens"); this quirk is kept for fidelity.
    """
    b, t, d = x.shape
    half = d // 2
    scale = math.log(10000) / (half - 1)
    freq = torch.exp(torch.arange(half, dtype=torch.float32, device=x.device) * -scale)
    pos = torch.arange(1, t + 1, dtype=torch.float32, device=x.device)
    table = torch.cat([torch.sin(pos[:, None] * freq), torch.cos(pos[:, None] * freq)], dim=1)
    if d % 2:
        table = F.pad(table, (0, 1))
    not_pad = (x[:, :, 0] != 0).unsqueeze(-1).to(x.dtype)
    return table.to(x.dtype).unsqueeze(0) * not_pad


class MultiheadAttention(nn.Module):
    """fairseq/MulT multi-head attention: packed in-projection, fused SDPA kernel."""

    def __init__(self, d: int, heads: int, attn_dropout: float = 0.0):
        super().__init__()
        if d % heads:
            raise ValueError(f"model width {d} is not divisible by {heads} heads")
        self.d, self.heads, self.attn_dropout = d, heads, attn_dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d, d))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d))
        self.out_proj = nn.Linear(d, d)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, kv: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None):
        b, t, d = x.shape
        if kv is None:  # self-attention: one packed projection
            q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            q = F.linear(x, self.in_proj_weight[:d], self.in_proj_bias[:d])
            k, v = F.linear(kv, self.in_proj_weight[d:], self.in_proj_bias[d:]).chunk(2, dim=-1)
        h = self.heads

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, -1, h, d // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(q), split(k), split(v), attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class CrossModalLayer(nn.Module):
    """Pre-LN layer; the source sequence is normalised by the same first LayerNorm (MulT)."""

    def __init__(self, d: int, heads: int, attn_dropout: float, relu_dropout: float, res_dropout: float, causal: bool):
        super().__init__()
        self.attn = MultiheadAttention(d, heads, attn_dropout)
        self.fc1, self.fc2 = _linear(d, 4 * d), _linear(4 * d, d)
        self.ln_attn, self.ln_ffn = nn.LayerNorm(d), nn.LayerNorm(d)
        self.relu_dropout, self.res_dropout, self.causal = relu_dropout, res_dropout, causal

    def forward(self, x: torch.Tensor, kv: Optional[torch.Tensor] = None) -> torch.Tensor:
        mask = future_mask(x.shape[1], (kv if kv is not None else x).shape[1], x.device) if self.causal else None
        h = self.ln_attn(x)
        h = self.attn(h, self.ln_attn(kv) if kv is not None else None, mask)
        x = x + F.dropout(h, self.res_dropout, self.training)
        h = F.dropout(F.relu(self.fc1(self.ln_ffn(x))), self.relu_dropout, self.training)
        return x + F.dropout(self.fc2(h), self.res_dropout, self.training)


class CrossModalTransformer(nn.Module):
    """x * sqrt(d) (+ positions) -> embed dropout -> layers (target attends to source) -> LN."""

    def __init__(
        self,
        d: int,
        heads: int,
        layers: int,
        attn_dropout: float = 0.0,
        relu_dropout: float = 0.0,
        res_dropout: float = 0.0,
        embed_dropout: float = 0.0,
        causal: bool = True,
        positions: bool = False,
    ):
        super().__init__()
        self.scale, self.embed_dropout, self.positions = math.sqrt(d), embed_dropout, positions
        self.layers = nn.ModuleList(
            CrossModalLayer(d, heads, attn_dropout, relu_dropout, res_dropout, causal) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.scale * x
        if self.positions:
            h = h + sinusoidal_positions(x)
        return F.dropout(h, self.embed_dropout, self.training)

    def forward(self, x: torch.Tensor, source: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self._embed(x)
        kv = self._embed(source) if source is not None else None
        for layer in self.layers:
            x = layer(x, kv)
        return self.norm(x)
