"""MulT's cross-modal transformer (fairseq style, pre-LN), without wasted work.

Layout is batch-first (B, T, d). Parameter shapes and initialisation follow MMSA
`models/subNets/transformers_encoder/` exactly, so parameter counts match: per layer
3d^2+3d (in-proj) + d^2+d (out-proj) + 8d^2+5d (FFN 4d; `ffn_dim` sets another width) + 4d
(2 LN). What differs is only how the same function is computed:
- attention runs through `scaled_dot_product_attention` (fused kernels, no attention map
  returned; MMSA computes head-averaged maps and discards them);
- on CPU in training, where torch has no fused kernel with dropout,
  `blocked_attention_with_dropout` computes the maps in cache-sized blocks, forward and
  again in backward (only q, k, v, the output and the dropout masks are kept), skips key
  columns the causal mask hides, and draws dropout masks with `draw_keeps` (16-bit
  uniform draws from numpy's PCG64, seeded from torch's generator: far faster than
  torch's CPU bernoulli; kept as uint8, the 1/(1-p) scale applied to the output);
- `forward(..., last_only=True)` computes the final layer for the last time step only
  (MulT reads only `h[-1]` of each memory transformer; under the causal mask the last
  query sees every key, so this is exact).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


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


def uint16_draws(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """`rng.integers(0, 2**16, shape, dtype=np.uint16)`: the same values and the same generator
    state afterwards, about 4x faster. numpy makes each pair of these draws from one 32-bit
    output (low half first; an odd count drops the last high half), and PCG64-like generators
    each pair of 32-bit outputs from one 64-bit output (low half first; the high half is kept
    for the next call), so the draws are the raw 64-bit outputs read as 16-bit words."""
    n = math.prod(shape)
    bg = rng.bit_generator
    words = (n + 1) // 2  # 32-bit outputs the numpy call consumes
    if sys.byteorder != "little" or not words:
        return rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)
    state = bg.state
    head = [np.array([state["uinteger"]], np.uint32)] if state["has_uint32"] else []
    raw = bg.random_raw((words - len(head) + 1) // 2)
    odd = (words - len(head)) % 2  # the last 64-bit output's high half is left for the next call
    bg.state = {**bg.state, "has_uint32": odd, "uinteger": int(raw[-1] >> np.uint64(32)) if odd and raw.size else 0}
    w32 = raw.view(np.uint32)[: words - len(head)]
    out = np.concatenate([*head, w32]) if head else w32
    return out.view(np.uint16)[:n].reshape(shape)


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
    draws = uint16_draws(rng, shape)
    return torch.from_numpy(np.multiply(draws >= round(p * (1 << 16)), 1.0 / (1.0 - p), dtype=np.float32))


def keep_flags(state: dict[str, Any], start: int, n: int, p: float, out: np.ndarray) -> None:
    """`out` (n uint8) = 1 where `dropout_keep` keeps: draws start .. start + n - 1 of the 16-bit
    stream of the PCG64 generator in `state` (its 64-bit outputs read as four 16-bit words,
    low first, as `uint16_draws` reads them). The generator jumps ahead to `start`, so any piece
    of the stream can be drawn by itself, on any thread, in any order."""
    bits = np.random.PCG64()
    bits.state = state  # type: ignore[assignment]
    bits.advance(start // 4)
    skip = start % 4
    draws = bits.random_raw((skip + n + 3) // 4).astype("<u8", copy=False).view("<u2")[skip : skip + n]
    np.greater_equal(draws, round(p * (1 << 16)), out=out.view(bool))


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def draw_keeps(state: dict[str, Any], sizes: list[int], p: float) -> list[torch.Tensor]:
    """The uint8 keep flags of blocks of `sizes` draws, as one generator makes them by successive
    `uint16_draws` calls (a call of n draws takes (n + 1) // 2 32-bit words: an odd n leaves
    half a word unused). numpy's draws run on one core, so each block is cut into one piece per
    torch thread, drawn at once on a thread pool (numpy releases the GIL); a forked process
    makes its own pool."""
    workers = max(1, min(torch.get_num_threads(), 4))
    out = [np.empty(n, np.uint8) for n in sizes]
    starts = np.cumsum([0] + [2 * ((n + 1) // 2) for n in sizes])
    pieces = [(int(starts[i]) + n * w // workers, o[n * w // workers : n * (w + 1) // workers])
              for i, (n, o) in enumerate(zip(sizes, out, strict=True)) for w in range(workers)]
    if workers == 1:
        for start, o in pieces:
            keep_flags(state, start, o.size, p, o)
    else:
        key = (os.getpid(), workers)
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(workers, "msabench-dropout")
        pool = _POOLS[key]
        for _ in pool.map(lambda piece: keep_flags(state, piece[0], piece[1].size, p, piece[1]), pieces):
            pass
    return [torch.from_numpy(o) for o in out]


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout, with the CPU mask drawn by `dropout_keep` (torch's CPU bernoulli is slow)."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return x * dropout_keep(x.shape, p, x.device)


ROW_BLOCK = 128  # query rows per dropout draw (the draws' shapes: keep them, or seeded runs change)
CHUNK_ELEMENTS = 4_000_000  # attention-map elements per dropout draw
SUB_ROWS = 64  # query rows per computed block (a finer causal cut than the draws')
SUB_ELEMENTS = 1 << 19  # attention-map elements per computed block (2 MB: stays in cache)


def _draw_chunks(b: int, h: int, t_q: int, t_k: int, causal: bool) -> Iterator[tuple[int, int, int, int, int]]:
    """(r0, r1, lim, i0, i1): the dropout draws' blocks in their draw order, query rows r0:r1
    (`ROW_BLOCK` of them) of batch items i0:i1 (at most `CHUNK_ELEMENTS` map elements), keys
    :lim (those the block's last row can see under MulT's causal mask)."""
    offset = abs(t_k - t_q)
    for r0 in range(0, t_q, ROW_BLOCK):
        r1 = min(t_q, r0 + ROW_BLOCK)
        lim = min(t_k, r1 + offset) if causal else t_k
        step = max(1, CHUNK_ELEMENTS // (h * (r1 - r0) * lim))
        for i0 in range(0, b, step):
            yield r0, r1, lim, i0, min(b, i0 + step)


def _sub_blocks(r0: int, r1: int, n0: int, n1: int, h: int, t_q: int, t_k: int,
                causal: bool) -> Iterator[tuple[int, int, int, int, int]]:
    """(s0, s1, lim, j0, j1): the computed blocks of one draw block, `SUB_ROWS` rows s0:s1 of
    (batch item, head) pairs j0:j1 of n0:n1 (whole items, about `SUB_ELEMENTS` map elements),
    keys :lim (visible to row s1 - 1)."""
    offset = abs(t_k - t_q)
    for s0 in range(r0, r1, SUB_ROWS):
        s1 = min(r1, s0 + SUB_ROWS)
        lim = min(t_k, s1 + offset) if causal else t_k
        step = h * max(1, SUB_ELEMENTS // (h * (s1 - s0) * lim))
        for j0 in range(n0, n1, step):
            yield s0, s1, lim, j0, min(n1, j0 + step)


class _BlockedAttention(torch.autograd.Function):
    """Attention with dropout computed block by block, forward and backward, keeping only q, k,
    v, the output and the dropout masks: each block's scores and softmax are recomputed in the
    backward pass while they are in cache (MulT's heads are 5-10 wide, so the maps' memory
    traffic, not arithmetic, is the cost). Products that reduce over a map's long side are
    computed transposed, (dh, keys) x (keys, rows), where MKL is several times faster than
    (rows, keys) x (keys, dh); so k, v and the output are held as (B h, dh, T)."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float, causal: bool,
                state: dict[str, Any]) -> torch.Tensor:
        b, h, t_q, dh = q.shape
        t_k = k.shape[2]
        q3 = torch.mul(q, dh**-0.5, out=q.new_empty(q.shape)).view(b * h, t_q, dh)
        k_t, v_t = (z.transpose(2, 3).reshape(b * h, dh, t_k) for z in (k, v))
        out_t = q.new_empty(b * h, dh, t_q)
        bias = _causal_bias(t_q, t_k, q) if causal else None
        chunks = list(_draw_chunks(b, h, t_q, t_k, causal))
        shapes = [((i1 - i0) * h, r1 - r0, lim) for r0, r1, lim, i0, i1 in chunks]
        masks: list[Optional[torch.Tensor]] = [None] * len(chunks)
        if p > 0:
            drawn = draw_keeps(state, [math.prod(z) for z in shapes], p)
            masks = [m.view(shape) for m, shape in zip(drawn, shapes, strict=True)]
        for (r0, r1, _, i0, i1), keep in zip(chunks, masks, strict=True):
            for s0, s1, lim_s, j0, j1 in _sub_blocks(r0, r1, i0 * h, i1 * h, h, t_q, t_k, causal):
                attn = _block_softmax(q3, k_t, bias, s0, s1, lim_s, j0, j1)
                if keep is not None:
                    attn.mul_(keep[j0 - i0 * h : j1 - i0 * h, s0 - r0 : s1 - r0, :lim_s])
                out_t[j0:j1, :, s0:s1].copy_(torch.bmm(v_t[j0:j1, :, :lim_s], attn.transpose(1, 2)))
        scale = 1.0 / (1.0 - p)
        if p > 0:
            out_t.mul_(scale)  # the kept entries' scale, applied to the (dh-wide) output
        ctx.save_for_backward(q3, k_t, v_t, out_t)
        ctx.masks, ctx.causal, ctx.scale, ctx.heads, ctx.bias = masks, causal, scale, h, bias
        return out_t.view(b, h, dh, t_q).transpose(2, 3)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Optional[torch.Tensor], ...]:
        q3, k_t, v_t, out_t = ctx.saved_tensors
        h, bias = ctx.heads, ctx.bias
        bh, t_q, dh = q3.shape
        b, t_k = bh // h, k_t.shape[2]
        grad_t = grad.transpose(2, 3).reshape(bh, dh, t_q)
        row_dot = (grad_t * out_t).sum(1).unsqueeze(-1)  # D_i = dO_i . O_i = sum_j P_ij dP_ij
        if ctx.scale != 1.0:  # the dropped map is P * keep * scale: the scale goes on dO
            grad_t = grad_t * ctx.scale
        grad3, q_t = grad_t.transpose(1, 2).contiguous(), q3.transpose(1, 2).contiguous()
        dq_t, dk_t, dv_t = torch.zeros_like(q_t), torch.zeros_like(k_t), torch.zeros_like(v_t)
        masks = iter(ctx.masks)
        for r0, r1, _, i0, i1 in _draw_chunks(b, h, t_q, t_k, ctx.causal):
            keep = next(masks)
            for s0, s1, lim_s, j0, j1 in _sub_blocks(r0, r1, i0 * h, i1 * h, h, t_q, t_k, ctx.causal):
                attn = _block_softmax(q3, k_t, bias, s0, s1, lim_s, j0, j1)
                d_attn = torch.bmm(grad3[j0:j1, s0:s1], v_t[j0:j1, :, :lim_s])  # dL/d(dropped map)
                if keep is not None:
                    m = keep[j0 - i0 * h : j1 - i0 * h, s0 - r0 : s1 - r0, :lim_s].float()  # converted once
                    d_attn.mul_(m)
                d_scores = d_attn.sub_(row_dot[j0:j1, s0:s1]).mul_(attn)
                if keep is not None:
                    attn.mul_(m)
                dv_t[j0:j1, :, :lim_s].add_(torch.bmm(grad_t[j0:j1, :, s0:s1], attn))
                dq_t[j0:j1, :, s0:s1].add_(torch.bmm(k_t[j0:j1, :, :lim_s], d_scores.transpose(1, 2)))
                dk_t[j0:j1, :, :lim_s].add_(torch.bmm(q_t[j0:j1, :, s0:s1], d_scores))
        return (dq_t.mul_(dh**-0.5).view(b, h, dh, t_q).transpose(2, 3), dk_t.view(b, h, dh, t_k).transpose(2, 3),
                dv_t.view(b, h, dh, t_k).transpose(2, 3), None, None, None)


def _causal_bias(t_q: int, t_k: int, like: torch.Tensor) -> torch.Tensor:
    """(t_q, t_k) additive mask: -inf where MulT's causal mask hides key j from query i."""
    return torch.zeros(t_q, t_k, dtype=like.dtype, device=like.device).masked_fill_(
        ~future_mask(t_q, t_k, like.device), float("-inf"))


def _block_softmax(q3: torch.Tensor, k_t: torch.Tensor, bias: Optional[torch.Tensor], s0: int, s1: int, lim: int,
                   j0: int, j1: int) -> torch.Tensor:
    """softmax(q k^T + bias) of query rows s0:s1, keys :lim, (batch item, head) pairs j0:j1, as
    (j1 - j0, rows, lim); q3 is (B h, Tq, dh), k_t (B h, dh, Tk). The causal bias is added only
    to the last s1 - s0 - 1 key columns: the block's first row sees all the others."""
    scores = torch.bmm(q3[j0:j1, s0:s1], k_t[j0:j1, :, :lim])
    if bias is not None:
        tail = max(0, lim - (s1 - s0 - 1))
        scores[:, :, tail:].add_(bias[s0:s1, tail:lim])
    return torch.softmax(scores, dim=-1)


def blocked_attention_with_dropout(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float, causal: bool
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + causal mask) with dropout, times v; (B, h, Tq, dh) in and out.

    torch has no fused CPU kernel for attention with dropout, and the materialised maps of
    MulT's long unaligned sequences (B x h x 496 x 496) make it memory-bound. So the maps are
    computed in cache-sized blocks, forward and again in backward (`_BlockedAttention`), the
    causal mask is added to the few key columns of a block it can hide, key columns that
    a block cannot see under MulT's causal mask (j >= i + 1 + |Tk - Tq|) are never computed,
    and dropout is a multiplication by `draw_keeps` (its 0/1, times 1/(1-p) on the output), drawn
    in blocks of `ROW_BLOCK` rows and `CHUNK_ELEMENTS` elements from one generator per call.
    Same function as dense attention with dropout; only the dropout draws differ.
    """
    state = np.random.PCG64(int(torch.randint(0, 2**62, (1,)).item())).state  # drawn even at p = 0
    return _BlockedAttention.apply(q, k, v, p, causal, state)


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
