"""MulT's cross-modal transformer (fairseq style, pre-LN), without wasted work.

Layout is batch-first (B, T, d). Parameter shapes and initialisation follow MMSA
`models/subNets/transformers_encoder/` exactly, so parameter counts match: per layer
3d^2+3d (in-proj) + d^2+d (out-proj) + 8d^2+5d (FFN 4d; `ffn_dim` sets another width) + 4d
(2 LN). What differs is only how the same function is computed:
- attention runs through `scaled_dot_product_attention` (fused kernels, no attention map
  returned; MMSA computes head-averaged maps and discards them);
- on CPU with attention dropout, where torch has no fused kernel,
  `blocked_attention_with_dropout` computes the maps in cache-sized blocks, skips key
  columns the causal mask hides, and draws dropout masks with `dropout_keep` (16-bit
  uniform draws from numpy's PCG64, seeded from torch's generator: about 8x faster than
  torch's CPU bernoulli);
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


def dropout_keep(shape: tuple[int, ...], p: float, device: torch.device,
                 rng: Optional[np.random.Generator] = None) -> torch.Tensor:
    """Float32 dropout multiplier: 0 with probability p (to 2^-16), else 1/(1-p).

    CPU: numpy PCG64 draws (about 8x faster than torch's CPU bernoulli), from `rng` or from a
    generator seeded by one draw of torch's default generator, so `torch.manual_seed` makes
    it reproducible; other devices: torch.rand. Multiplying by a float mask is one
    vectorised pass forward and backward (masked_fill copies, then fills: ~5x slower here).
    """
    if device.type != "cpu":
        return (torch.rand(shape, device=device) >= p).float().mul_(1.0 / (1.0 - p))
    if rng is None:
        rng = np.random.Generator(np.random.PCG64(int(torch.randint(0, 2**62, (1,)).item())))
    draws = rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)
    return torch.from_numpy(np.multiply(draws >= round(p * (1 << 16)), 1.0 / (1.0 - p), dtype=np.float32))


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout, with the CPU mask drawn by `dropout_keep` (torch's CPU bernoulli is slow)."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return x * dropout_keep(x.shape, p, x.device)


ROW_BLOCK = 128  # query rows per block in the CPU dropout path
CHUNK_ELEMENTS = 4_000_000  # attention-map elements per block-chunk (~16 MB: stays in cache)


def blocked_attention_with_dropout(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float, causal: bool
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + causal mask) with dropout, times v; (B, h, Tq, dh) in and out.

    torch has no fused CPU kernel for attention with dropout, and the materialised maps of
    MulT's long unaligned sequences (B x h x 496 x 496) make it memory-bound. So the map is
    computed in blocks of `ROW_BLOCK` query rows and chunks of the batch sized to stay in
    cache, the causal mask is fused into the score GEMM (baddbmm with an additive bias), key
    columns that a row block cannot see under MulT's causal mask (j >= i + 1 + |Tk - Tq|) are
    never computed, and dropout is a multiplication by `dropout_keep`. Same function as dense
    attention with dropout; only the dropout draws differ.
    """
    b, h, t_q, dh = q.shape
    t_k = k.shape[2]
    offset = abs(t_k - t_q)
    rng = np.random.Generator(np.random.PCG64(int(torch.randint(0, 2**62, (1,)).item())))
    q = q * dh**-0.5
    rows = []
    for r0 in range(0, t_q, ROW_BLOCK):
        r1 = min(t_q, r0 + ROW_BLOCK)
        lim = min(t_k, r1 + offset) if causal else t_k  # keys visible to the block's last row
        bias = None
        if causal:
            hidden = torch.arange(lim, device=q.device)[None, :] >= torch.arange(r0 + 1 + offset, r1 + 1 + offset, device=q.device)[:, None]
            bias = torch.zeros(r1 - r0, lim, dtype=q.dtype, device=q.device).masked_fill_(hidden, float("-inf"))
        step = max(1, CHUNK_ELEMENTS // (h * (r1 - r0) * lim))
        chunks = []
        for i in range(0, b, step):
            qc = q[i : i + step, :, r0:r1].flatten(0, 1)
            kc = k[i : i + step, :, :lim].flatten(0, 1).transpose(-1, -2)
            scores = torch.baddbmm(bias, qc, kc) if bias is not None else torch.bmm(qc, kc)
            attn = torch.softmax(scores, dim=-1)
            if p > 0:
                attn = attn * dropout_keep(scores.shape, p, q.device, rng)
            chunks.append(torch.bmm(attn, v[i : i + step, :, :lim].flatten(0, 1)).view(-1, h, r1 - r0, dh))
        rows.append(torch.cat(chunks) if len(chunks) > 1 else chunks[0])
    return torch.cat(rows, dim=2) if len(rows) > 1 else rows[0]


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

    def forward(self, x: torch.Tensor, kv: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """x (B, Tq, d) attends to kv (B, Tk, d), under MulT's causal mask when `causal`."""
        b, t, d = x.shape
        w, bias, h = self.in_proj_weight, self.in_proj_bias, self.heads

        def heads_of(z: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, h, T, d/h)
            return z.view(b, -1, h, d // h).transpose(1, 2)

        q = heads_of(F.linear(x, w[:d], bias[:d]))
        k = heads_of(F.linear(kv, w[d : 2 * d], bias[d : 2 * d]))
        v = heads_of(F.linear(kv, w[2 * d :], bias[2 * d :]))
        p = self.attn_dropout if self.training else 0.0
        if x.device.type == "cpu" and self.training:
            out = blocked_attention_with_dropout(q, k, v, p, causal)
        else:
            mask = future_mask(t, kv.shape[1], x.device) if causal else None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class CrossModalLayer(nn.Module):
    """Pre-LN layer; the source sequence is normalised by the same first LayerNorm (MulT)."""

    def __init__(self, d: int, heads: int, attn_dropout: float, relu_dropout: float, res_dropout: float, causal: bool,
                 ffn_dim: Optional[int] = None):
        super().__init__()
        self.attn = MultiheadAttention(d, heads, attn_dropout)
        ffn = 4 * d if ffn_dim is None else ffn_dim  # MulT: 4d; MFON's copy: d (fc1 = fc2 = Linear(d, d))
        self.fc1, self.fc2 = _linear(d, ffn), _linear(ffn, d)
        self.ln_attn, self.ln_ffn = nn.LayerNorm(d), nn.LayerNorm(d)
        self.relu_dropout, self.res_dropout, self.causal = relu_dropout, res_dropout, causal

    def forward(self, x: torch.Tensor, kv: Optional[torch.Tensor] = None, last_only: bool = False) -> torch.Tensor:
        """x (B, T, d) attends to kv (B, S, d), or to itself when kv is None. With `last_only`,
        only the last query position is computed: it sees every key under the causal mask
        (j < (T - 1) + 1 + |S - T| covers every j), so no mask is needed."""
        source = self.ln_attn(kv if kv is not None else x)
        if last_only:
            x = x[:, -1:]
        query = self.ln_attn(x) if kv is not None or last_only else source
        h = self.attn(query, source, causal=self.causal and not last_only)
        x = x + dropout(h, self.res_dropout, self.training)
        h = dropout(F.relu(self.fc1(self.ln_ffn(x))), self.relu_dropout, self.training)
        return x + dropout(self.fc2(h), self.res_dropout, self.training)


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
        ffn_dim: Optional[int] = None,
    ):
        super().__init__()
        self.scale, self.embed_dropout, self.positions = math.sqrt(d), embed_dropout, positions
        self.layers = nn.ModuleList(
            CrossModalLayer(d, heads, attn_dropout, relu_dropout, res_dropout, causal, ffn_dim) for _ in range(layers)
        )
        self.norm: nn.Module = nn.LayerNorm(d)  # Semi-IIN's wrapper swaps in nn.Identity

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.scale * x
        if self.positions:
            h = h + sinusoidal_positions(x)
        return dropout(h, self.embed_dropout, self.training)

    def forward(self, x: torch.Tensor, source: Optional[torch.Tensor] = None, last_only: bool = False) -> torch.Tensor:
        """(B, T, d) -> (B, T, d); with `last_only`, (B, 1, d): the last time step, computed
        without the rest of the final layer (identical to `forward(x)[:, -1:]`)."""
        x = self._embed(x)
        kv = self._embed(source) if source is not None else None
        for i, layer in enumerate(self.layers):
            x = layer(x, kv, last_only=last_only and i == len(self.layers) - 1)
        return self.norm(x)
