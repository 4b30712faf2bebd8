"""MulT's cross-modal transformer (fairseq style, pre-LN), without wasted work.

Layout is batch-first (B, T, d). Parameter shapes and initialisation follow MMSA
`models/subNets/transformers_encoder/` exactly, so parameter counts match: per layer
3d^2+3d (in-proj) + d^2+d (out-proj) + 8d^2+5d (FFN 4d) + 4d (2 LN). What differs is
only how the same function is computed:
- attention runs through `scaled_dot_product_attention` (fused kernels, no attention map
  returned; MMSA computes head-averaged maps and discards them);
- on CPU with attention dropout, where torch has no fused kernel, attention is computed
  explicitly with the dropout mask drawn by `dropout_mask` (16-bit uniform draws from
  numpy's PCG64, seeded from torch's generator: about 8x faster than torch's CPU
  bernoulli), the causal mask applied in place, and the 1/(1-p) rescaling folded into V;
- `forward(..., last_only=True)` computes the final layer for the last time step only
  (MulT reads only `h[-1]` of each memory transformer; under the causal mask the last
  query sees every key, so this is exact).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
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


def dropout_mask(shape: tuple[int, ...], p: float, device: torch.device) -> torch.Tensor:
    """Bool mask, True where an element is DROPPED, each with probability p (to 2^-16).

    CPU: numpy PCG64 draws, seeded by one draw from torch's default generator (so
    `torch.manual_seed` makes it reproducible); other devices: torch.rand.
    """
    if device.type != "cpu":
        return torch.rand(shape, device=device) < p
    seed = int(torch.randint(0, 2**62, (1,)).item())
    draws = np.random.Generator(np.random.PCG64(seed)).integers(0, 1 << 16, size=shape, dtype=np.uint16)
    return torch.from_numpy(draws < round(p * (1 << 16)))


class MultiheadAttention(nn.Module):
    """fairseq/MulT multi-head attention: packed in-projection parameters, fused SDPA kernel."""

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

    def forward(self, x: torch.Tensor, kv: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, Tq, d) attends to kv (B, Tk, d); mask (Tq, Tk) bool, True = may attend."""
        b, t, d = x.shape
        w, bias, h = self.in_proj_weight, self.in_proj_bias, self.heads

        def heads_of(z: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, h, T, d/h)
            return z.view(b, -1, h, d // h).transpose(1, 2)

        q = heads_of(F.linear(x, w[:d], bias[:d]))
        k = heads_of(F.linear(kv, w[d : 2 * d], bias[d : 2 * d]))
        v = heads_of(F.linear(kv, w[2 * d :], bias[2 * d :]))
        p = self.attn_dropout if self.training else 0.0
        if p > 0 and x.device.type == "cpu":
            scores = torch.matmul(q * (d // h) ** -0.5, k.transpose(-1, -2))
            if mask is not None:
                scores.masked_fill_(~mask, float("-inf"))
            attn = torch.softmax(scores, dim=-1).masked_fill(dropout_mask(scores.shape, p, x.device), 0.0)
            out = torch.matmul(attn, v * (1.0 / (1.0 - p)))
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class CrossModalLayer(nn.Module):
    """Pre-LN layer; the source sequence is normalised by the same first LayerNorm (MulT)."""

    def __init__(self, d: int, heads: int, attn_dropout: float, relu_dropout: float, res_dropout: float, causal: bool):
        super().__init__()
        self.attn = MultiheadAttention(d, heads, attn_dropout)
        self.fc1, self.fc2 = _linear(d, 4 * d), _linear(4 * d, d)
        self.ln_attn, self.ln_ffn = nn.LayerNorm(d), nn.LayerNorm(d)
        self.relu_dropout, self.res_dropout, self.causal = relu_dropout, res_dropout, causal

    def forward(self, x: torch.Tensor, kv: Optional[torch.Tensor] = None, last_only: bool = False) -> torch.Tensor:
        """x (B, T, d) attends to kv (B, S, d), or to itself when kv is None. With `last_only`,
        only the last query position is computed (it sees every key under the causal mask)."""
        source = self.ln_attn(kv if kv is not None else x)
        if last_only:
            x = x[:, -1:]
            mask = None  # the last query sees all keys: j < (T - 1) + 1 + |S - T| covers every j
        else:
            mask = future_mask(x.shape[1], source.shape[1], x.device) if self.causal else None
        h = self.attn(self.ln_attn(x) if kv is not None or last_only else source, source, mask)
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

    def forward(self, x: torch.Tensor, source: Optional[torch.Tensor] = None, last_only: bool = False) -> torch.Tensor:
        """(B, T, d) -> (B, T, d); with `last_only`, (B, 1, d): the last time step, computed
        without the rest of the final layer (identical to `forward(x)[:, -1:]`)."""
        x = self._embed(x)
        kv = self._embed(source) if source is not None else None
        for i, layer in enumerate(self.layers):
            x = layer(x, kv, last_only=last_only and i == len(self.layers) - 1)
        return self.norm(x)
