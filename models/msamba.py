"""MSAmba: multimodal sentiment analysis with state space models (He, Liang, Peng, Xie, Khan,
Song, Yu; AAAI 2025), **reconstructed from a third-party copy**.

The official repository (C0notSilly/MSAmba) could not be read. The reference is the copy
jien0404/msa@915d81c ("init project": `models/msamba.py` class `MSAmba_v5_c1`,
`models/mamba_block.py` `Block_GLCE` / `TextGuidedFusionBlock_v2`, `models/mixer.py`
`MambaVisionMixer`, `train_msamba.py`, `opts.py`, `core/scheduler.py`), which descends from the
authors' code but was already modified by the forker; this file reconstructs the model from it, and every choice the copy
leaves open is a config field.
Nothing here needs `mamba-ssm`, Triton or CUDA.

Forward (MMSA `aligned_50`, 50 steps per modality; no padding is masked anywhere, as coded):
1. text: BERT (fine-tuned) last hidden state of all 50 positions -> Linear(768 -> 128); audio
   and vision Linear(d -> 128); each modality gets a learnable CLS token (zeros) prepended and
   a learnable position embedding (1, 51, 128), trunc-normal std 0.02.
2. ISM, `ism_depth` x `Block_GLCE` per modality (own weights): residual stream in fp32,
   RMSNorm(x + residual); GLCE x <- x + Linear_{51->51}(x along time) + Conv1d(51 -> 51, k3)(x)
   (the "local extractor" treats the 51 tokens as channels and slides over the 128 features,
   as coded); RMSNorm; Mamba mixer (d_state 16, d_conv 4, expand 2, dt_rank 8). The last
   block's mixer output is used without adding the residual back. Sub-heads Linear(128 -> 1)
   on each modality's position 0.
3. CHM (`text_guided_fusion`, depth 1): three `TextGuidedFusionBlock_v2`, anchored on T, V
   and A. Each has three MambaVisionMixers (non-causal 'same' conv on x and z, no conv bias,
   selective scan on x without z-gating, out_proj([y; z]); its dt_proj is applied with its bias and the scan
   adds the bias again, as coded: `mixer_dt_bias="twice"`) and three RMSNorms; the anchor takes
   the pre-norm residual path, the two context modalities a plain norm, and the anchor's
   output at position 0 is added to every position of both context outputs. The A-block reads
   the T-block's text output (`chm_a_text="t_block"`, as coded; possibly a bug). The paper's
   "hybrid Mamba and attention" is not in the copy (`mixer.Attention` is imported, never used):
   there is nothing to reconstruct, so there is no switch for it.
4. pred = Linear(384 -> 1)([cls_V + video_T[0] + video_A[0]; cls_A + audio_T[0] + audio_V[0];
   cls_T + text_A[0] + text_V[0]]); CHM heads Linear(128 -> 1) on each anchor's position 0.
Loss (train_msamba.py): L1(pred, y) + 0.5 * sum of the L1 of the 3 ISM and 3 CHM heads, all
against the multimodal label.

The selective scan: `selective_scan` has the semantics of mamba-ssm's
`selective_scan_ref` (softplus(delta + bias), exp(delta A), delta B u, C, + D u, optional
z-gating) and runs in fp32 with autocast off, as the CUDA kernel computes. It is a custom
autograd function in a time-major layout: forward carries the state (batch, d_inner, d_state)
step by step and keeps only the state at each chunk start; backward makes each chunk's
decays and states again from it and runs the reverse scan G_t = C_t g_t + a_{t+1} G_{t+1} with
the chain rule by hand, step by step (no per-step autograd graph). Chunks are `scan_chunk` steps
(`scan_impl="chunked"`) or the whole sequence (`scan_impl="sequential"`), in PyTorch ops. The
default, `scan_impl="auto"`, runs the same recurrence as one compiled C kernel per pass
(models/layers/scan_kernel.py: built on first use with the machine's C compiler, the state
kept in registers) for float32 CPU tensors, and the
chunked PyTorch scan where there is no compiler, on GPU and in fp64; `scan_impl="compiled"`
insists on the kernel. All are exact up to float rounding: tests/test_msamba.py checks the
PyTorch scans against a literal per-step loop (values and gradients, both directions, chunk
boundaries) to 1e-9 in fp64, and the kernel against it to 1e-5 in fp32, and the whole model's
loss and gradients with each against the sequential scan to 1e-5.

ISM direction: the copy builds upstream `mamba_ssm.Mamba` (unidirectional); the
paper says bidirectional, so the default is the VideoMamba/Vim `bimamba` form: shared
in/out projections, a second conv1d/x_proj/dt_proj/A/D on the time-flipped (x, z), out =
out_proj(y_fwd + flip(y_bwd)). `ism_direction="uni"` is the copy's scan. VideoMamba marks only
the forward dt_proj bias `_no_reinit`, so `_init_weights` zeroes the backward one
(`backward_dt_init="zero_bias"`, as VideoMamba builds it).

Parameters (built with bert-base shapes, tests/test_msamba.py), equal to a hand count of the copy's layers:
depth 4 unidirectional (the copy's default) MOSI 111,808,383 / MOSEI 111,819,135; depth 4
bidirectional (this file's default) MOSI 112,026,495 / MOSEI 112,037,247. The BERT pooler is
built and never used (as in the copy: `BertModel` with its pooler, last hidden state read).

Not separable: the CHM mixes the modalities (context streams get the anchor's token), so there
is no encode/fuse fast path; `modality_params` gives each modality its input projection,
tokens, ISM and ISM head (text: BERT too); the CHM and the final head are shared.

Harness deviations: selection on validation MAE (the copy's forker selects
on validation MAE with patience 20; the original rule is unknown), one test pass; the copy's
per-epoch warm-up + cosine schedule is declared in `lr_schedule()` (the trainer applies it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Optional, cast

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig, ModelOutput, MSAModel, Schedule, task_loss
from models.layers import scan_kernel
from models.layers.text_encoder import build_text_encoder, split_no_decay
from models.constants import MODALITIES
from models.registry import register_model

DIRECTIONS = ("bi", "uni")
SCAN_IMPLS = ("auto", "compiled", "chunked", "sequential")
GLCE_LOCAL = ("token_channels", "time_depthwise")
CHM_A_TEXT = ("t_block", "own")
MIXER_DT_BIAS = ("twice", "once")
BACKWARD_DT_INIT = ("zero_bias", "mamba")
LR_SCHEDULES = ("copy_warmup_cosine", "constant")
# IEMOCAP: a harness preset (the code supports MOSI/MOSEI/SIMS), see PRESETS
UNSUPPORTED = {
    # the copy's SIMS route (msamba.py:589-592, dataset.py __truncated) cuts audio/vision to 50 frames but
    # leaves text at 39 tokens, so `x_text + pos_embed_text` (1, 51, D) fails (msamba.py:845)
    "sims": "MSAmba's position embeddings and GLCE convs cover 50 frames + CLS per modality (aligned_50); "
            "CH-SIMS is published unaligned only (39/400/55 frames) and the code's SIMS route fails on its "
            "39-token text",
    "simsv2": "MSAmba's position embeddings and GLCE convs cover 50 frames + CLS per modality (aligned_50); "
              "CH-SIMS v2 is published unaligned only (50/925/232 frames) and the code has no SIMS v2 route",
}


@dataclass(kw_only=True)
class MSAmbaConfig(ModelConfig):
    text_input: str = "ids"  # MMSA `text_bert` (ids, mask, segments) -> fine-tuned BERT (copy models/bert.py)
    setting: str = "aligned"  # MMSA aligned_50.pkl (copy opts.py --dataPath)
    text_encoder: str = "bert-base-uncased"  # local dir | "bert-base" | "tiny" | cached hub name
    text_vocab_size: Optional[int] = None  # vocabulary of a named random-init config (tiny)
    seq_len: int = 50  # MSAmba_v5_c1.seq_len; position embeddings and GLCE cover seq_len + 1 tokens
    d_model: int = 128  # sm_embed_dim
    ism_depth: int = 4  # opts.py --single_modality_depth 4 (the class default and one derivative say 2)
    ism_direction: str = field(default="bi", metadata={"choices": DIRECTIONS})
    #   bi: VideoMamba bimamba, the paper's "bi-directional" (harness decision) | uni: the copy's upstream Mamba
    backward_dt_init: str = field(default="zero_bias", metadata={"choices": BACKWARD_DT_INIT})
    #   bi only. zero_bias: VideoMamba (default Linear init, bias zeroed by _init_weights) | mamba: forward's dt init
    glce_local: str = field(default="token_channels", metadata={"choices": GLCE_LOCAL})
    #   token_channels: Conv1d(51, 51) over the feature axis, as coded | time_depthwise: forker's fix 573faad
    d_state: int = 16  # mamba_ssm Mamba / MambaVisionMixer defaults
    d_conv: int = 4
    expand: int = 2
    fusion_depth: int = 1  # opts.py --fusion_depth 1 (--cross_modal_fusion text_guided_fusion)
    chm_a_text: str = field(default="t_block", metadata={"choices": CHM_A_TEXT})
    #   t_block: the A-block reads the T-block's text output, as coded (msamba.py:976-978) | own: its own stream
    mixer_dt_bias: str = field(default="twice", metadata={"choices": MIXER_DT_BIAS})
    #   twice: MambaVisionMixer applies dt_proj with its bias and the scan adds the bias again (mixer.py, as
    #   coded) | once: as mamba_ssm's Mamba (weight only, bias in the scan)
    sub_loss: bool = True  # opts.py --sub_loss True: 3 ISM heads + 3 CHM heads in the loss
    sub_loss_weight: float = 0.5  # opts.py --sub_loss_lambda 0.5
    # optimiser (train_msamba.py:82-99): torch.optim.AdamW, BERT 1e-5 / wd 0.01 (0 on bias/LayerNorm), rest `lr` / `weight_decay`
    lr_bert: float = 1e-5
    weight_decay_bert: float = 0.01
    lr_schedule: str = field(default="copy_warmup_cosine", metadata={"choices": LR_SCHEDULES})
    #   copy core/scheduler.py: linear warm-up over 0.1 * epochs (epoch 0 at lr 0), then cosine T_max 0.9 * epochs
    scan_impl: str = field(default="auto", metadata={"choices": SCAN_IMPLS})
    #   harness, all exact up to float rounding. auto: the compiled kernel where it builds and applies (fp32 on
    #   CPU), else chunked | compiled: the kernel or an error | chunked / sequential: the PyTorch scan
    scan_chunk: int = 2  # steps whose decays are made together (harness decision: 2 x 512 KiB fits a core's L2)


# -- selective scan in PyTorch ops (mamba-ssm selective_scan_ref semantics; the compiled kernel: layers/scan_kernel.py)
# Time-major layout: the per-step tensors are (L, batch, .) and the states (steps, batch, d, n), so
# every step reads and writes contiguous slices and the running state (batch, d, n) stays in
# cache. The decays exp(dt A) and the states are made `chunk` steps at a time, in the forward and
# again in the backward from the chunk's start state: keeping all L states (27 MB per ISM scan at
# batch 32, memory the OS must page in again on every training step) costs more than making them
# twice. Each contraction keeps its vector on the left of the bmm, (1, n) x (n, d): the
# (d, n) x (n, 1) form is about 10x slower on CPU.
def _time_major(x: torch.Tensor) -> torch.Tensor:
    """(batch, ., L) -> (L, batch, .) contiguous."""
    return x.permute(2, 0, 1).contiguous()


def scan_chunks(L: int, impl: str, chunk: int) -> list[tuple[int, int]]:
    """The [start, end) step ranges whose decays are made together: `chunk` steps ("chunked")
    or the whole sequence ("sequential")."""
    if impl not in SCAN_IMPLS:
        raise ValueError(f"unknown scan_impl '{impl}' (expected one of {SCAN_IMPLS})")
    step = L if impl == "sequential" else max(1, chunk)
    return [(s, min(s + step, L)) for s in range(0, L, step)]


def _chunk_states(hs: torch.Tensor, a: torch.Tensor, dt: torch.Tensor, du: torch.Tensor, A2: torch.Tensor,
                  B: torch.Tensor, s: int, e: int) -> None:
    """h_t = a_t h_{t-1} + (dt_t u_t) B_t for steps s..e-1 into hs[1:e-s+1] from hs[0] = h_{s-1}
    (h_{-1} = 0), their decays a_t = exp(dt_t A) = 2^(dt_t A2) into a[:e-s] (A2 = A log2(e): exp2 is
    about 3x faster than exp on CPU); dt, du (L, batch, d), B (L, batch, n)."""
    k = e - s
    torch.mul(dt[s:e, ..., None], A2, out=a[:k]).exp2_()
    torch.mul(du[s:e, ..., None], B[s:e, :, None, :], out=hs[1:k + 1])
    for t in range(1 if s == 0 else 0, k):
        hs[t + 1].addcmul_(a[t], hs[t])


def _buffers(du: torch.Tensor, n: int, chunks: list[tuple[int, int]], count: int) -> list[torch.Tensor]:
    """`count` chunk-sized state buffers (longest chunk + 1, batch, d, n)."""
    return [du.new_empty(max(e - s for s, e in chunks) + 1, *du.shape[1:], n) for _ in range(count)]


def _scan_forward(dt: torch.Tensor, du: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                  chunks: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """y_t = C_t h_t (L, batch, d) and the states h_{s-1} at the chunk starts (chunks, batch, d, n)."""
    L, b, d = du.shape
    n = A.shape[1]
    hs, a = _buffers(du, n, chunks, 2)
    starts, y = du.new_empty(len(chunks), b, d, n), du.new_empty(L, b, d)
    starts[0].zero_()  # h_{-1} = 0; each later start is copied in below
    for i, (s, e) in enumerate(chunks):
        hs[0].copy_(starts[i])
        _chunk_states(hs, a, dt, du, A * math.log2(math.e), B, s, e)
        torch.bmm(C[s:e].view(-1, 1, n), hs[1:e - s + 1].view(-1, d, n).transpose(1, 2), out=y[s:e].view(-1, 1, d))
        if i + 1 < len(chunks):
            starts[i + 1].copy_(hs[e - s])
    return y, starts


def _state_grads(starts: torch.Tensor, dt: torch.Tensor, du: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                 C: torch.Tensor, g: torch.Tensor, chunks: list[tuple[int, int]]):
    """Per chunk, last first: its states again from its start, then the reverse scan
    G_t = C_t g_t + a_{t+1} G_{t+1} (the gradient reaching h_t; P_t = G_t a_t is carried) step by
    step, and from them the gradients of dt (through a_t; X_t = P_t h_{t-1}: sum_n A X_t), of
    dt u (sum_n B_t G_t), of B (sum_d du_t G_t), of C (sum_d g_t h_t) and of A (sum over batch and t
    of dt_t X_t, accumulated step by step). Returns (g_dt, g_du, g_B, g_C) time-major and g_A."""
    L, b, d = du.shape
    n = A.shape[1]
    hs, a, G, Pc = _buffers(du, n, chunks, 4)
    acc, P = du.new_zeros(b, d, n), du.new_zeros(b, d, n)  # acc: sum_t dt_t X_t; P_L = 0
    g_dt, g_du, g_B, g_C = du.new_zeros(L, b, d), du.new_empty(L, b, d), du.new_empty(L, b, n), du.new_empty(L, b, n)
    for i in reversed(range(len(chunks))):
        (s, e), k = chunks[i], chunks[i][1] - chunks[i][0]
        hs[0].copy_(starts[i])
        _chunk_states(hs, a, dt, du, A * math.log2(math.e), B, s, e)
        for t in range(k - 1, -1, -1):
            torch.addcmul(P, g[s + t, :, :, None], C[s + t, :, None, :], out=G[t])
            P = torch.mul(G[t], a[t], out=Pc[t])
        Gk = G[:k].view(-1, d, n)
        torch.bmm(B[s:e].view(-1, 1, n), Gk.transpose(1, 2), out=g_du[s:e].view(-1, 1, d))
        torch.bmm(du[s:e].view(-1, 1, d), Gk, out=g_B[s:e].view(-1, 1, n))
        torch.bmm(g[s:e].view(-1, 1, d), hs[1:k + 1].view(-1, d, n), out=g_C[s:e].view(-1, 1, n))
        j = 1 if s == 0 else 0  # h_{-1} = 0: no decay gradient at t = 0
        X = torch.mul(Pc[j:k], hs[j:k], out=a[j:k])  # the decays are spent
        for t in range(k - 1, j - 1, -1):
            acc.addcmul_(X[t - j], dt[s + t, :, :, None])
        torch.sum(X.mul_(A), -1, out=g_dt[s + j:e])
    return g_dt, g_du, g_B, g_C, acc.sum(0)


def _use_kernel(impl: str, *tensors: torch.Tensor) -> bool:
    """Whether this scan runs the compiled kernel (models/layers/scan_kernel.py): "auto" where it
    builds and applies, "compiled" there or an error saying why not."""
    if impl not in SCAN_IMPLS:
        raise ValueError(f"unknown scan_impl '{impl}' (expected one of {SCAN_IMPLS})")
    if impl not in ("auto", "compiled"):
        return False
    if scan_kernel.supports(*tensors):
        return True
    if impl == "compiled":
        why = scan_kernel.reason() if not scan_kernel.available() else \
            "it runs float32 CPU tensors with d_state <= 32, got " + \
            f"{tensors[0].dtype} on {tensors[0].device}, d_state {tensors[2].shape[1]}"
        raise RuntimeError(f"scan_impl='compiled': the compiled selective scan cannot run here: {why}")
    return False


class SelectiveScan(torch.autograd.Function):
    """Mamba-1 selective scan. The PyTorch scan saves its inputs (time-major) and the state at each
    chunk start; backward is the reverse scan plus the chain rule by hand (no per-step autograd
    graph). The compiled kernel takes the (batch, d, L) inputs as they are, with the skip term
    and the gate, and saves only the inputs."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus: bool, impl: str, chunk: int):
        kernel = _use_kernel(impl, u, delta, A, B, C)
        if kernel:
            pre = delta + delta_bias[:, None] if delta_bias is not None else delta
            dt = F.softplus(pre) if softplus else pre
            ctx.save_for_backward(u, pre, dt, A, B, C, D, z)
            ctx.cfg = (softplus, None, delta_bias is not None, kernel)
            return scan_kernel.scan_forward(u, dt, A, B, C, D, z)
        L = u.shape[-1]
        uT, BT, CT = _time_major(u), _time_major(B), _time_major(C)
        pre = _time_major(delta) + delta_bias if delta_bias is not None else _time_major(delta)
        dt = F.softplus(pre) if softplus else pre
        chunks = scan_chunks(L, impl, chunk)
        y, starts = _scan_forward(dt, dt * uT, A, BT, CT, chunks)
        if D is not None:
            y.addcmul_(uT, D)
        zT = _time_major(z) if z is not None else None
        ctx.save_for_backward(uT, pre, A, BT, CT, D, zT, starts, y if z is not None else None)
        ctx.cfg = (softplus, chunks, delta_bias is not None, kernel)
        return (y * F.silu(zT) if zT is not None else y).permute(1, 2, 0)

    @staticmethod
    def backward(ctx, g_out):
        softplus, chunks, has_bias, kernel = ctx.cfg
        if kernel:
            u, pre, dt, A, B, C, D, z = ctx.saved_tensors
            g_u, g_delta, g_z, g_B, g_C, g_A, g_D = scan_kernel.scan_backward(u, dt, A, B, C, D, z, g_out)
            if softplus:
                g_delta.mul_(torch.sigmoid(pre))
            g_bias = g_delta.sum((0, 2)) if has_bias else None
            return g_u, g_delta, g_A, g_B, g_C, g_D, g_z, g_bias, None, None, None
        uT, pre, A, BT, CT, D, zT, starts, y = ctx.saved_tensors
        g = _time_major(g_out)
        dt = F.softplus(pre) if softplus else pre
        g_z = None
        if zT is not None:
            sig = torch.sigmoid(zT)
            g_z = g * y * sig * (1 + zT * (1 - sig))
            g = g * zT * sig
        g_dt, g_du, g_B, g_C, g_A = _state_grads(starts, dt, dt * uT, A, BT, CT, g, chunks)
        g_u = g_du * dt
        g_D = None
        if D is not None:
            g_u.addcmul_(g, D)
            g_D = (g * uT).sum((0, 1))
        g_delta = g_dt.addcmul_(g_du, uT)
        if softplus:
            g_delta.mul_(torch.sigmoid(pre))
        g_bias = g_delta.sum((0, 1)) if has_bias else None
        back = lambda x: x.permute(1, 2, 0) if x is not None else None  # noqa: E731
        return back(g_u), back(g_delta), g_A, back(g_B), back(g_C), g_D, back(g_z), g_bias, None, None, None


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: Optional[torch.Tensor] = None, z: Optional[torch.Tensor] = None,
                   delta_bias: Optional[torch.Tensor] = None, softplus: bool = True,
                   impl: str = "auto", chunk: int = 2) -> torch.Tensor:
    """y = selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, softplus): u, delta, z
    (B, d, L); A (d, n); B, C (B, n, L); D, delta_bias (d,). Computed in fp32 (fp64 for fp64
    inputs) with autocast off, as the CUDA kernel computes; returns that dtype."""
    dtype = torch.promote_types(u.dtype, torch.float32)
    cast = lambda t: t.to(dtype) if t is not None else None  # noqa: E731
    with torch.autocast(u.device.type, enabled=False):
        return SelectiveScan.apply(cast(u), cast(delta), cast(A), cast(B), cast(C), cast(D), cast(z),
                                   cast(delta_bias), softplus, impl, chunk)


# -- Mamba mixers -----------------------------------------------------------------------------
def _dt_bias(d: int, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> torch.Tensor:
    """Mamba's dt_proj bias: softplus^-1 of dt ~ log-uniform[dt_min, dt_max], clamped at floor."""
    dt = torch.exp(torch.rand(d) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


class SSMBranch(nn.Module):
    """Depthwise conv -> SiLU -> x_proj (dt, B, C) -> dt_proj -> selective scan over (B, d, L).

    `padding`: "causal" (mamba_ssm Mamba: pad d_conv-1 and cut to L) | "same" (MambaVisionMixer's
    F.conv1d(padding='same'): left (k-1)//2, right the rest)."""

    def __init__(self, d: int, d_state: int, dt_rank: int, d_conv: int, conv_bias: bool, padding: str,
                 dt_init: str = "mamba", scan: tuple[str, int] = ("auto", 2), dt_bias_twice: bool = False):
        super().__init__()
        self.d_state, self.dt_rank, self.padding, self.scan = d_state, dt_rank, padding, scan
        self.dt_bias_twice = dt_bias_twice  # MambaVisionMixer: self.dt_proj(dt), then delta_bias in the scan
        self.conv1d = nn.Conv1d(d, d, d_conv, groups=d, bias=conv_bias)
        self.x_proj = nn.Linear(d, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d, bias=True)
        if dt_init == "mamba":  # mamba_simple.py: dt weight U(+-dt_rank^-0.5), inverse-softplus bias
            nn.init.uniform_(self.dt_proj.weight, -dt_rank ** -0.5, dt_rank ** -0.5)
            with torch.no_grad():
                self.dt_proj.bias.copy_(_dt_bias(d))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d, 1))  # S4D real
        self.D = nn.Parameter(torch.ones(d))

    def conv(self, x: torch.Tensor) -> torch.Tensor:
        k = self.conv1d.kernel_size[0]
        left = k - 1 if self.padding == "causal" else (k - 1) // 2
        return F.silu(self.conv1d(F.pad(x, (left, k - 1 - left))))

    def forward(self, x: torch.Tensor, z: Optional[torch.Tensor]) -> torch.Tensor:
        """x (B, d, L) before the conv; z gates the output (Mamba) or is None (MambaVisionMixer)."""
        x = self.conv(x)
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (self.dt_proj(dt) if self.dt_bias_twice else dt @ self.dt_proj.weight.t()).transpose(1, 2)
        # the bias enters the scan (delta_bias); with dt_bias_twice it is in delta already as well
        return selective_scan(x, delta, -torch.exp(self.A_log.float()), B.transpose(1, 2), C.transpose(1, 2),
                              self.D, z, self.dt_proj.bias, True, *self.scan)


class Mamba(nn.Module):
    """mamba_ssm Mamba(d_model) (v1 shapes), optionally VideoMamba's bimamba (second branch on
    the time-flipped x and z, out = out_proj(y + flip(y_b)))."""

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int, bidirectional: bool,
                 backward_dt_init: str, scan: tuple[str, int]):
        super().__init__()
        d_inner, dt_rank = expand * d_model, math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.fwd = SSMBranch(d_inner, d_state, dt_rank, d_conv, True, "causal", "mamba", scan)
        self.bwd = (SSMBranch(d_inner, d_state, dt_rank, d_conv, True, "causal",
                              "mamba" if backward_dt_init == "mamba" else "default", scan)
                    if bidirectional else None)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)  # (B, d_inner, L) each
        y = self.fwd(x, z)
        if self.bwd is not None:
            y = y + self.bwd(x.flip(-1), z.flip(-1)).flip(-1)
        return self.out_proj(y.transpose(1, 2).to(h.dtype))


class MambaVisionMixer(nn.Module):
    """MambaVision's mixer (re-implemented): in_proj -> x, z (d_inner/2 each); both through
    a 'same'-padded depthwise conv without bias + SiLU; scan on x only (no z-gating);
    out_proj([y; z]). Its `bimamba` argument is ignored in the copy, so there is none here."""

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int, scan: tuple[str, int],
                 dt_bias_twice: bool = True):
        super().__init__()
        d_half, dt_rank = expand * d_model // 2, math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_half, bias=False)
        self.ssm = SSMBranch(d_half, d_state, dt_rank, d_conv, False, "same", "mamba", scan,  # conv_bias // 2 = 0
                             dt_bias_twice)
        self.conv1d_z = nn.Conv1d(d_half, d_half, d_conv, groups=d_half, bias=False)
        self.out_proj = nn.Linear(2 * d_half, d_model, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)
        k = self.conv1d_z.kernel_size[0]
        z = F.silu(self.conv1d_z(F.pad(z, ((k - 1) // 2, k - 1 - (k - 1) // 2))))
        y = self.ssm(x, None)
        return self.out_proj(torch.cat([y.to(z.dtype), z], dim=1).transpose(1, 2))


def _stack(stacks: nn.ModuleDict, m: str) -> nn.ModuleList:
    """Modality m's block stack (typed: a ModuleDict hands out plain Modules)."""
    return cast(nn.ModuleList, stacks[m])


def add_norm(h: torch.Tensor, residual: Optional[torch.Tensor], norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """mamba-ssm's fused add + RMSNorm (prenorm, residual_in_fp32): (norm(h + res), h + res in fp32)."""
    residual = (h if residual is None else residual + h).float()
    return norm(residual).to(h.dtype), residual


class ISMBlock(nn.Module):
    """`Block_GLCE`: add+RMSNorm -> GLCE (x + global Linear over time + local conv) -> RMSNorm -> Mamba."""

    def __init__(self, cfg: MSAmbaConfig):
        super().__init__()
        d, tokens = cfg.d_model, cfg.seq_len + 1
        scan = (cfg.scan_impl, cfg.scan_chunk)
        self.norm = nn.RMSNorm(d, eps=1e-5)
        self.global_extractor = nn.Linear(tokens, tokens)
        self.local_time = cfg.glce_local == "time_depthwise"
        self.local_extractor = (nn.Conv1d(d, d, 3, padding=1, groups=d) if self.local_time
                                else nn.Conv1d(tokens, tokens, 3, padding=1))  # as coded: tokens are channels
        self.layer_norm_2 = nn.RMSNorm(d, eps=1e-5)
        self.mixer = Mamba(d, cfg.d_state, cfg.d_conv, cfg.expand, cfg.ism_direction == "bi", cfg.backward_dt_init, scan)

    def forward(self, h: torch.Tensor, residual: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, residual = add_norm(h, residual, self.norm)
        local = (self.local_extractor(x.transpose(1, 2)).transpose(1, 2) if self.local_time
                 else self.local_extractor(x))
        x = x + self.global_extractor(x.transpose(1, 2)).transpose(1, 2) + local
        return self.mixer(self.layer_norm_2(x.float()).to(x.dtype)), residual

    def init_like_copy(self, n_layer: int) -> None:
        """msamba.py `_init_weights` on the ISM layers: Linear biases to zero (not the
        `_no_reinit` forward dt bias), Mamba out_proj kaiming-uniform(a=sqrt 5) / sqrt(n_layer)."""
        keep = {id(self.mixer.fwd.dt_proj.bias)}
        for m in self.modules():
            if isinstance(m, nn.Linear) and m.bias is not None and id(m.bias) not in keep:
                nn.init.zeros_(m.bias)
        nn.init.kaiming_uniform_(self.mixer.out_proj.weight, a=math.sqrt(5))
        with torch.no_grad():
            self.mixer.out_proj.weight /= math.sqrt(n_layer)


class CHMBlock(nn.Module):
    """`TextGuidedFusionBlock_v2`: anchor (pre-norm residual path) and two context streams (plain
    norm), one MambaVisionMixer each; the anchor's position-0 output is added to both contexts."""

    def __init__(self, cfg: MSAmbaConfig):
        super().__init__()
        d, scan = cfg.d_model, (cfg.scan_impl, cfg.scan_chunk)
        self.mixers = nn.ModuleList(MambaVisionMixer(d, cfg.d_state, cfg.d_conv, cfg.expand, scan,
                                                     cfg.mixer_dt_bias == "twice") for _ in range(3))
        self.norms = nn.ModuleList(nn.RMSNorm(d, eps=1e-5) for _ in range(3))

    def forward(self, streams: list[torch.Tensor], residuals: list[Optional[torch.Tensor]]):
        """streams = [anchor, context 1, context 2] -> (outputs, residuals) in the same order."""
        normed, new_res = [], []
        for i, (h, res) in enumerate(zip(streams, residuals, strict=True)):
            if i == 0:
                x, res = add_norm(h, res, self.norms[0])
            else:  # context: "add residual if any", keep it, RMSNorm (prenorm=False)
                res = h if res is None else h + res
                x = self.norms[i](res.float()).to(h.dtype)
            normed.append(x)
            new_res.append(res)
        anchor = self.mixers[0](normed[0])
        outs = [anchor] + [self.mixers[i](normed[i]) + anchor[:, :1] for i in (1, 2)]
        return outs, new_res


class MSAmba(MSAModel):
    cfg: MSAmbaConfig

    def __init__(self, cfg: MSAmbaConfig):
        super().__init__(cfg)
        d, tokens = cfg.d_model, cfg.seq_len + 1
        self.text = build_text_encoder(cfg.text_encoder, cfg.text_vocab_size)
        in_dims = {"t": self.text.hidden_size, "a": cfg.dims[1], "v": cfg.dims[2]}
        self.proj = nn.ModuleDict({m: nn.Linear(in_dims[m], d) for m in MODALITIES})  # proj_l0 / proj_a0 / proj_v0
        self.cls_token = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, d)) for m in MODALITIES})
        self.pos_embed = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, tokens, d)) for m in MODALITIES})
        for p in self.pos_embed.values():
            nn.init.trunc_normal_(p, std=0.02)  # timm trunc_normal_(std=.02): bounds +-2 absolute
        self.ism = nn.ModuleDict({m: nn.ModuleList(ISMBlock(cfg) for _ in range(cfg.ism_depth)) for m in MODALITIES})
        for block in self.ism.modules():  # t, a, v stacks in order, each block by depth
            if isinstance(block, ISMBlock):
                block.init_like_copy(cfg.ism_depth)
        self.sub_head = nn.ModuleDict({m: nn.Linear(d, cfg.n_out) for m in MODALITIES}) if cfg.sub_loss else None  # sub_fc_*
        self.chm = nn.ModuleDict({m: nn.ModuleList(CHMBlock(cfg) for _ in range(cfg.fusion_depth)) for m in MODALITIES})
        self.chm_head = nn.ModuleDict({m: nn.Linear(d, cfg.n_out) for m in MODALITIES})  # sub_fc_*_cls
        self.fc = nn.Linear(3 * d, cfg.n_out)

    def _inputs(self, batch) -> dict[str, torch.Tensor]:
        """Each modality as (B, seq_len, d_model), padded/truncated to seq_len (MMSA aligned_50: as is)."""
        L = self.cfg.seq_len
        ids, mask, seg = batch.text_ids, batch.text_mask, batch.text_segment
        if seg is None:
            seg = torch.zeros_like(ids)
        if ids.shape[1] != L:
            fit = lambda t, v: F.pad(t, (0, L - t.shape[1]), value=v) if t.shape[1] < L else t[:, :L]  # noqa: E731
            ids, mask, seg = fit(ids, batch.special_ids[2]), fit(mask, 0), fit(seg, 0)
        fit_seq = lambda x: F.pad(x, (0, 0, 0, L - x.shape[1])) if x.shape[1] < L else x[:, :L]  # noqa: E731
        raw = {"t": self.text(ids, mask, seg), "a": fit_seq(batch.audio), "v": fit_seq(batch.vision)}
        out = {}
        for m in MODALITIES:
            x = self.proj[m](raw[m])
            out[m] = torch.cat([self.cls_token[m].expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1) + self.pos_embed[m]
        return out

    def _ism(self, m: str, h: torch.Tensor) -> torch.Tensor:
        residual = None
        for block in _stack(self.ism, m):
            h, residual = block(h, residual)
        return h  # the last mixer output; the residual is not added back (as coded)

    def _chm(self, ism: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(the 384-d fusion input parts per modality, the three anchors' position-0 tokens)."""
        # streams[anchor][modality], residuals likewise (msamba.py:955-990)
        s = {a: dict(ism) for a in MODALITIES}
        r: dict[str, dict[str, Optional[torch.Tensor]]] = {a: {m: None for m in MODALITIES} for a in MODALITIES}
        order = {"t": ("t", "v", "a"), "v": ("v", "t", "a"), "a": ("a", "v", "t")}
        anchors = {}
        for i in range(self.cfg.fusion_depth):
            for a in ("t", "v", "a"):  # call order: T-, V-, then A-block
                mods = order[a]
                inputs = [s[a][m] for m in mods]
                if a == "a" and self.cfg.chm_a_text == "t_block":
                    inputs[2] = s["t"]["t"]  # hidden_states_text_T: the T-block's text output
                outs, res = _stack(self.chm, a)[i](inputs, [r[a][m] for m in mods])
                for m, o, rr in zip(mods, outs, res, strict=True):
                    s[a][m], r[a][m] = o, rr
                anchors[a] = outs[0][:, 0]
        fused = {
            "v": ism["v"][:, 0] + s["t"]["v"][:, 0] + s["a"]["v"][:, 0],
            "a": ism["a"][:, 0] + s["t"]["a"][:, 0] + s["v"]["a"][:, 0],
            "t": ism["t"][:, 0] + s["a"]["t"][:, 0] + s["v"]["t"][:, 0],
        }
        return fused, anchors

    def forward(self, batch) -> ModelOutput:
        x = self._inputs(batch)
        ism = {m: self._ism(m, x[m]) for m in MODALITIES}
        fused, anchors = self._chm(ism)
        pred = self.fc(torch.cat([fused["v"], fused["a"], fused["t"]], dim=-1))
        unimodal = {m: self.sub_head[m](ism[m][:, 0]) for m in MODALITIES} if self.sub_head is not None else None
        chm = {m: self.chm_head[m](anchors[m]) for m in MODALITIES}
        return ModelOutput(pred=pred, unimodal=unimodal, features={m: ism[m][:, 0] for m in MODALITIES},
                           extras={"chm": chm})

    def loss(self, output: ModelOutput, batch) -> dict[str, torch.Tensor]:
        task = task_loss(output.pred, batch.labels, self.cfg.task)
        parts = {"task": task}
        if self.cfg.sub_loss:  # train_msamba.py:193-203
            assert output.unimodal is not None  # forward fills it
            for m in MODALITIES:
                parts[f"ism_{m}"] = task_loss(output.unimodal[m], batch.labels, self.cfg.task)
            for m in MODALITIES:
                parts[f"chm_{m}"] = task_loss(output.extras["chm"][m], batch.labels, self.cfg.task)
            aux = sum(v for k, v in parts.items() if k != "task")
            return {"total": task + self.cfg.sub_loss_weight * aux, **parts}
        return {"total": task, **parts}

    def param_groups(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        decay, no_decay = split_no_decay(self.text)  # = the copy's ['bias', 'LayerNorm.*'] name rule on BERT
        text = {id(p) for p in self.text.parameters()}
        other = [p for p in self.parameters() if id(p) not in text]
        return [
            {"name": "bert", "params": decay, "lr": cfg.lr_bert, "weight_decay": cfg.weight_decay_bert},
            {"name": "bert_no_decay", "params": no_decay, "lr": cfg.lr_bert, "weight_decay": 0.0},
            {"name": "other", "params": other, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        ]

    def modality_params(self) -> dict[str, list[nn.Parameter]]:
        # each branch up to the CHM; the CHM blocks and heads and the final fc are shared
        groups = {}
        for m in MODALITIES:
            ps = [*self.proj[m].parameters(), self.cls_token[m], self.pos_embed[m], *self.ism[m].parameters()]
            if self.sub_head is not None:
                ps += list(self.sub_head[m].parameters())
            groups[m] = ([*self.text.parameters()] if m == "t" else []) + ps
        return groups

    def lr_schedule(self) -> Schedule:
        """The copy's per-epoch factor (core/scheduler.py GradualWarmupScheduler(multiplier=1,
        total_epoch=0.1 N) then CosineAnnealingLR(T_max=0.9 N)): e / W for e <= W (epoch 0 trains at
        lr 0), then 0.5 (1 + cos(pi k / T)) with k counted from the first epoch after warm-up."""
        cfg = self.cfg
        if cfg.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule '{cfg.lr_schedule}' (expected one of {LR_SCHEDULES})")
        if cfg.lr_schedule == "constant":
            return Schedule(record_factor=True, source="harness switch: constant lr")
        return Schedule(kind="warmup_cosine_epochs", warmup_ratio=0.1, epochs=cfg.max_epochs, record_factor=True,
                        source="copy core/scheduler.py GradualWarmupScheduler + CosineAnnealingLR, per epoch")

    def summary(self) -> dict[str, Any]:
        cfg = self.cfg
        out = {"ism_direction": cfg.ism_direction, "ism_depth": cfg.ism_depth, "scan_impl": cfg.scan_impl}
        if cfg.scan_impl in ("auto", "compiled"):  # what the result file needs to say which scan ran
            out["scan_kernel"] = scan_kernel.reason()
        return out


# -- presets ------------------------------------------------------------------------------------
# `official` (copy opts.py / train_msamba.py; per-dataset values are not in the code, only the
# input widths switch): AdamW, BERT 1e-5 (wd 0.01), others 1e-3 (wd 1e-4; --lr/--weight_decay
# unused), batch 128, 100 epochs, warm-up + cosine per epoch. Selection: validation MAE
# (the forker's --select_metric MAE, --patience 20; original rule unknown), no rounding.
_OFFICIAL_MOSI = MSAmbaConfig(
    dims=(768, 5, 20),  # MSAmba_v5_c1: proj_a0 Linear(5), proj_v0 Linear(20) for mosi
    optimizer="adamw", lr=1e-3, weight_decay=1e-4, lr_bert=1e-5, weight_decay_bert=0.01,
    batch_size=128, max_epochs=100,  # --batch_size 128, --n_epochs 100
    early_stop_patience=20, selection_metric="MAE", val_loss_decimals=None,  # --patience 20, --select_metric MAE
    lr_schedule="copy_warmup_cosine",
)
_OFFICIAL_MOSEI = replace(_OFFICIAL_MOSI, dims=(768, 74, 35))  # proj_a0 Linear(74), proj_v0 Linear(35)
# synthetic `demo` (harness decision): tiny random-init BERT over the 2048-id synthetic
# vocabulary, d_model 16, d_state 8, ISM depth 2, constant lr (the copy's warm-up trains epoch 0 at lr 0);
# BERT lr 5e-4 as bert_text's demo (a random-init encoder learns from scratch); 4 CPU epochs.
_DEMO = replace(
    _OFFICIAL_MOSI, text_encoder="tiny", text_vocab_size=2048, d_model=16, d_state=8, ism_depth=2,
    lr_bert=5e-4, batch_size=32, max_epochs=4, early_stop_patience=2, lr_schedule="constant",
)

# IEMOCAP (harness decision; the code supports MOSI/MOSEI/SIMS only): the MOSEI preset on MulT's
# word-aligned iemocap_data.pkl (74/35 widths) with the MulT protocol's 4 x 2 logits and CE for the
# fused and the sub heads alike; selection on the validation loss (MulT's rule; IEMOCAP has no MAE).
# Text: the words recovered from the GloVe vectors (--glove).
_IEMOCAP = replace(_OFFICIAL_MOSEI, task="iemocap", n_out=8, selection_metric="loss")
PRESETS = {
    ("mosi", "official"): _OFFICIAL_MOSI,
    ("mosei", "official"): _OFFICIAL_MOSEI,
    ("iemocap", "official"): _IEMOCAP,
    ("synthetic", "demo"): _DEMO,
}


@register_model("msamba", config=MSAmbaConfig, presets=PRESETS, default_preset="official", unsupported=UNSUPPORTED,
                display_name="MSAmba (reconstructed)", paper="He et al., AAAI 2025",
                reference="https://github.com/jien0404/msa@915d81c (a third-party copy)",
                family="state space", order=140)
def msamba(cfg: MSAmbaConfig) -> MSAmba:
    """MSAmba (He et al., AAAI 2025), reconstructed from a third-party copy: ISM (GLCE + bi-Mamba) and CHM."""
    return MSAmba(cfg)
